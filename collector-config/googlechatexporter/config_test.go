package googlechatexporter

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/auditrail/auditrail/collector-config/googlechatexporter/internal/metadata"
)

const exampleWebhook = "https://chat.googleapis.com/v1/spaces/AAAAexample/messages?key=example-key-0123456789&token=example-token-0123456789"

func loadConfig(t *testing.T, name string) *Config {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	cfg := NewFactory().CreateDefaultConfig()
	sub, err := cm.Sub(component.NewIDWithName(metadata.Type, name).String())
	require.NoError(t, err)
	require.NoError(t, sub.Unmarshal(cfg))
	return cfg.(*Config)
}

func TestLoadConfigMinimalUsesDefaults(t *testing.T) {
	cfg := loadConfig(t, "")
	require.NoError(t, confmap.Validate(cfg))
	assert.Equal(t, configopaque.String(exampleWebhook), cfg.WebhookURL)
	assert.Equal(t, time.Minute, cfg.DedupWindow)
	assert.Equal(t, RateLimitConfig{MaxMessages: 10, Interval: time.Minute}, cfg.RateLimit)
	assert.Equal(t, 10*time.Second, cfg.ClientConfig.Timeout)
	assert.True(t, cfg.QueueConfig.HasValue())
	assert.True(t, cfg.RetryConfig.Enabled)
	assert.Equal(t, "Open", cfg.LinkText)
	assert.Empty(t, cfg.Rules)
}

func TestLoadConfigFullReadsEveryOption(t *testing.T) {
	cfg := loadConfig(t, "full")
	require.NoError(t, confmap.Validate(cfg))
	assert.Equal(t, 5*time.Second, cfg.ClientConfig.Timeout)
	assert.Contains(t, cfg.LinkTemplate, "var-tenant={{ .Tenant }}")
	assert.Equal(t, "Open in Grafana", cfg.LinkText)
	assert.Equal(t, 2*time.Minute, cfg.DedupWindow)
	assert.Equal(t, RateLimitConfig{MaxMessages: 5, Interval: time.Minute}, cfg.RateLimit)
	require.True(t, cfg.QueueConfig.HasValue())
	assert.Equal(t, int64(500), cfg.QueueConfig.Get().QueueSize)
	assert.Equal(t, time.Second, cfg.RetryConfig.InitialInterval)
	assert.Equal(t, time.Duration(0), cfg.RetryConfig.MaxElapsedTime)

	require.Len(t, cfg.Rules, 2)
	imp := cfg.Rules[0]
	assert.Equal(t, "impersonation", imp.Name)
	assert.Equal(t, []string{"admin.impersonation.*"}, imp.EventNames)
	require.NotNil(t, imp.DedupWindow)
	assert.Equal(t, time.Duration(0), *imp.DedupWindow)
	require.NotNil(t, imp.RateLimit)
	assert.Equal(t, RateLimitConfig{MaxMessages: 3, Interval: time.Minute}, *imp.RateLimit)
	risky := cfg.Rules[1]
	assert.Equal(t, []string{"high", "critical"}, risky.Risks)
	assert.Nil(t, risky.DedupWindow, "an unset rule field falls back to the exporter's")
	assert.Nil(t, risky.RateLimit)

	rules, err := buildRules(cfg)
	require.NoError(t, err)
	require.Len(t, rules, 3)
	assert.Equal(t, 2*time.Minute, rules[1].dedupWindow, "high-risk inherits dedup_window")
	assert.Equal(t, 5, rules[1].maxMessages, "high-risk inherits rate_limit")
	assert.Equal(t, defaultRuleName, rules[2].name)
}

func TestLoadConfigLocalAllowsHTTPOnLoopback(t *testing.T) {
	cfg := loadConfig(t, "local")
	require.NoError(t, confmap.Validate(cfg))
	assert.True(t, cfg.InsecureAllowHTTP)
}

func TestValidateRejectsBadConfig(t *testing.T) {
	dur := func(d time.Duration) *time.Duration { return &d }
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"missing webhook", func(c *Config) { c.WebhookURL = "" }, "webhook_url is required"},
		{"relative webhook", func(c *Config) { c.WebhookURL = "/v1/spaces/x?key=secret-key-0123" }, "not an absolute URL"},
		{"unparsable webhook", func(c *Config) { c.WebhookURL = "https://chat.googleapis.com/%zz?key=secret-key-0123" }, "not an absolute URL"},
		{"http without flag", func(c *Config) { c.WebhookURL = "http://127.0.0.1:9/x?key=secret-key-0123" }, "must use https"},
		{"http flag off loopback", func(c *Config) {
			c.WebhookURL, c.InsecureAllowHTTP = "http://chat.example.com/x?key=secret-key-0123", true
		}, "only allows a loopback host"},
		{"other scheme", func(c *Config) { c.WebhookURL = "ftp://chat.example.com/x?key=secret-key-0123" }, "must use https"},
		{"endpoint set", func(c *Config) { c.ClientConfig.Endpoint = "https://chat.googleapis.com" }, `set "webhook_url"`},
		{"negative dedup", func(c *Config) { c.DedupWindow = -time.Second }, "dedup_window must not be negative"},
		{"negative rate", func(c *Config) { c.RateLimit.MaxMessages = -1 }, "max_messages must not be negative"},
		{"rate without interval", func(c *Config) { c.RateLimit.Interval = 0 }, "rate_limit.interval must be positive"},
		{"bad template", func(c *Config) { c.LinkTemplate = "https://g/{{ .Tenant " }, "link_template"},
		{"template field unknown", func(c *Config) { c.LinkTemplate = "https://g/?t={{ .Nope }}" }, "link_template"},
		{"template not a URL", func(c *Config) { c.LinkTemplate = "grafana {{ .Tenant }}" }, "not an absolute http(s) URL"},
		{"rule without name", func(c *Config) { c.Rules = []RuleConfig{{}} }, "rules[0]: name is required"},
		{"rule named default", func(c *Config) { c.Rules = []RuleConfig{{Name: "default"}} }, "reserved"},
		{"rule names twice", func(c *Config) { c.Rules = []RuleConfig{{Name: "a"}, {Name: "a"}} }, "rules[1]: name \"a\" is used twice"},
		{"rule bad risk", func(c *Config) { c.Rules = []RuleConfig{{Name: "a", Risks: []string{"severe"}}} }, "risk \"severe\""},
		{"rule bad pattern", func(c *Config) { c.Rules = []RuleConfig{{Name: "a", EventNames: []string{"a*b"}}} }, "trailing '*'"},
		{"rule negative dedup", func(c *Config) { c.Rules = []RuleConfig{{Name: "a", DedupWindow: dur(-1)}} }, "rules[0].dedup_window"},
		{"rule rate without interval", func(c *Config) {
			c.Rules = []RuleConfig{{Name: "a", RateLimit: &RateLimitConfig{MaxMessages: 1}}}
		}, "rules[0].rate_limit.interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := createDefaultConfig().(*Config)
			cfg.WebhookURL = exampleWebhook
			tt.mutate(cfg)
			err := cfg.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assertNoSecret(t, err.Error(), "secret-key-0123", "example-key-0123456789", "example-token-0123456789")
		})
	}
}

func TestValidateAcceptsLoopbackHTTPAndDisabledLimits(t *testing.T) {
	for _, host := range []string{"127.0.0.1:8080", "[::1]:8080", "localhost:8080"} {
		cfg := createDefaultConfig().(*Config)
		cfg.WebhookURL = configopaque.String("http://" + host + "/v1/spaces/T/messages?key=k&token=t")
		cfg.InsecureAllowHTTP = true
		cfg.DedupWindow = 0
		cfg.RateLimit = RateLimitConfig{}
		assert.NoError(t, cfg.Validate(), host)
	}
}

func TestConfigNeverPrintsWebhookURL(t *testing.T) {
	cfg := loadConfig(t, "full")
	for _, text := range []string{cfg.WebhookURL.String(), strings.TrimSpace(string(must(cfg.WebhookURL.MarshalText())))} {
		assertNoSecret(t, text, "example-key-0123456789", "example-token-0123456789")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func assertNoSecret(t *testing.T, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		assert.NotContains(t, text, s, "secret leaked")
	}
}

func TestRuleLinkTemplateIsValidatedWithTheRulesName(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.WebhookURL = "https://chat.googleapis.com/v1/spaces/S/messages?key=k&token=t"
	cfg.Rules = []RuleConfig{{Name: "approval", LinkTemplate: "/approvals/{{ .ApprovalID }}"}}
	err := cfg.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rules[0].link_template: the rendered link is not an absolute http(s) URL")
	cfg.Rules[0].LinkTemplate = "http://127.0.0.1:4320/approvals/{{ required .Raw.ApprovalID | pathescape }}"
	require.NoError(t, cfg.Validate())
}
