package awscloudwatchlogsexporter

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
)

func loadConfig(t *testing.T, name string) *Config {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := createDefaultConfig().(*Config)
	sub, err := cm.Sub(component.MustNewIDWithName("awscloudwatchlogs", name).String())
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Unmarshal(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg := loadConfig(t, "")
	if err := confmap.Validate(cfg); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	if cfg.Region != "us-east-1" || cfg.LogGroupName != "/auditrail/high-risk" || cfg.LogStreamName != "collector-1" {
		t.Fatalf("unexpected config: %+v", cfg)
	}
	if cfg.RawLog || cfg.Endpoint != "" || cfg.TimeoutSettings.Timeout != 30*time.Second {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	if !cfg.QueueSettings.HasValue() || !cfg.BackOffConfig.Enabled {
		t.Fatal("queue and retry must be on by default")
	}
}

func TestLoadConfigFull(t *testing.T) {
	cfg := loadConfig(t, "full")
	if err := confmap.Validate(cfg); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	if !cfg.RawLog || cfg.Endpoint != "http://127.0.0.1:5000" || cfg.BackOffConfig.MaxElapsedTime != 0 {
		t.Fatalf("unexpected config: %+v", cfg)
	}
	if q := cfg.QueueSettings.Get(); q.NumConsumers != 1 || q.QueueSize != 100 {
		t.Fatalf("unexpected queue: %+v", q)
	}
}

func TestValidateRejectsMissingAndBadFields(t *testing.T) {
	err := confmap.Validate(loadConfig(t, "invalid"))
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []error{errNoGroup, errNoStream, errNoRegion, errBadEndpoint} {
		if !containsErr(err, want) {
			t.Errorf("missing error %q in %v", want, err)
		}
	}
}

func containsErr(err, want error) bool {
	return errors.Is(err, want)
}
