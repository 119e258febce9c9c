package googlecloudexporter

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestConfigReadsContribKeysAndRetryOnFailure(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	if err := cm.Unmarshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Config.Config.ProjectID != "p1" || cfg.Config.Config.LogConfig.DefaultLogName != "audit" ||
		cfg.Config.TimeoutSettings.Timeout != 30*time.Second {
		t.Fatalf("contrib's keys not read: %+v", cfg.Config)
	}
	if !cfg.RetryConfig.Enabled || cfg.RetryConfig.MaxElapsedTime != 0 || cfg.RetryConfig.InitialInterval != time.Second {
		t.Fatalf("retry_on_failure not read: %+v", cfg.RetryConfig)
	}
	if id := cfg.QueueSettings.Get().StorageID; id == nil || *id != component.MustNewID("file_storage") {
		t.Fatalf("sending_queue.storage not read: %v", id)
	}
}

func TestRefusedRequestsArePermanentAndOutagesAreRetried(t *testing.T) {
	invalid := status.Error(codes.InvalidArgument, "bad entry")
	down := status.Error(codes.Unavailable, "connection refused")
	if !consumererror.IsPermanent(classify(errors.Join(fmt.Errorf("write: %w", invalid), down))) {
		t.Fatal("a malformed request would be retried for ever")
	}
	for _, err := range []error{down, status.Error(codes.DeadlineExceeded, "slow"), status.Error(codes.Canceled, "shutdown"),
		errors.New("not a gRPC status")} {
		if consumererror.IsPermanent(classify(err)) {
			t.Fatalf("%v must be retried", err)
		}
	}
	if classify(nil) != nil {
		t.Fatal("nil stays nil")
	}
}
