package googlechatexporter // import "github.com/auditrail/auditrail/collector-config/googlechatexporter"

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
)

// defaultRuleName names the implicit rule that takes every record no configured rule matches.
const defaultRuleName = "default"

// validRisks are the values DESIGN.md allows for audit.risk.
var validRisks = map[string]bool{"low": true, "medium": true, "high": true, "critical": true}

// Config defines the configuration of the googlechat exporter.
type Config struct {
	// ClientConfig holds the HTTP client settings (timeout, tls, proxy_url, headers, ...).
	// Its endpoint is not used: the webhook URL is a secret and lives in WebhookURL.
	ClientConfig confighttp.ClientConfig                                  `mapstructure:",squash"` // squash ensures fields are correctly decoded in embedded struct.
	QueueConfig  configoptional.Optional[exporterhelper.QueueBatchConfig] `mapstructure:"sending_queue"`
	RetryConfig  configretry.BackOffConfig                                `mapstructure:"retry_on_failure"`

	// WebhookURL is the Google Chat incoming webhook URL. It carries the space key and
	// token, so it is opaque: never printed, logged or put into an error.
	WebhookURL configopaque.String `mapstructure:"webhook_url"`
	// InsecureAllowHTTP allows an http:// webhook URL on a loopback host, for tests.
	InsecureAllowHTTP bool `mapstructure:"insecure_allow_http"`

	// LinkTemplate is a Go text/template that renders the card's button link.
	// Empty means no button.
	LinkTemplate string `mapstructure:"link_template"`
	// LinkText is the label of the card's button.
	LinkText string `mapstructure:"link_text"`

	// DedupWindow and RateLimit are the defaults for rules that do not set their own,
	// and the settings of the implicit "default" rule.
	DedupWindow time.Duration   `mapstructure:"dedup_window"`
	RateLimit   RateLimitConfig `mapstructure:"rate_limit"`

	// SpaceBudget caps the posts to the space (cards and summaries of every rule and tenant together) per
	// interval; the excess is folded into one digest per interval. max_messages 0 turns it off.
	SpaceBudget RateLimitConfig `mapstructure:"space_budget"`

	// Rules are tried in order; the first that matches a record decides its settings.
	Rules []RuleConfig `mapstructure:"rules"`
}

// RateLimitConfig caps the cards sent per rule and tenant in a fixed interval.
type RateLimitConfig struct {
	// MaxMessages is the number of cards per rule and tenant in one interval; 0 means no limit.
	MaxMessages int `mapstructure:"max_messages"`
	// Interval is the length of one rate-limit window.
	Interval time.Duration `mapstructure:"interval"`
}

// RuleConfig selects records by event name and risk and gives them their own limits.
type RuleConfig struct {
	// Name identifies the rule in summaries, logs and the link template.
	Name string `mapstructure:"name"`
	// EventNames match the LogRecord EventName exactly, or by prefix when they end in "*".
	// Empty matches every event name.
	EventNames []string `mapstructure:"event_names"`
	// Risks match the audit.risk attribute. Empty matches every risk (and none).
	Risks []string `mapstructure:"risks"`
	// DedupWindow overrides the exporter's dedup_window for this rule.
	DedupWindow *time.Duration `mapstructure:"dedup_window"`
	// RateLimit overrides the exporter's rate_limit for this rule.
	RateLimit *RateLimitConfig `mapstructure:"rate_limit"`
	// LinkTemplate overrides the exporter's link_template for this rule's cards (e.g. the approval
	// request's own page, from {{.ApprovalID}}).
	LinkTemplate string `mapstructure:"link_template"`
	// LinkText overrides the exporter's link_text for this rule's cards.
	LinkText string `mapstructure:"link_text"`
}

var _ component.Config = (*Config)(nil)

// Validate checks the configuration; no error message ever contains the webhook URL.
func (cfg *Config) Validate() error {
	var errs []error
	errs = append(errs, validateWebhookURL(string(cfg.WebhookURL), cfg.InsecureAllowHTTP))
	if cfg.ClientConfig.Endpoint != "" {
		errs = append(errs, errors.New(`"endpoint" is not used by the googlechat exporter: set "webhook_url"`))
	}
	errs = append(errs, validateLimits("", cfg.DedupWindow, cfg.RateLimit))
	if cfg.SpaceBudget.MaxMessages < 0 {
		errs = append(errs, errors.New("space_budget.max_messages must not be negative"))
	}
	if cfg.SpaceBudget.MaxMessages > 0 && cfg.SpaceBudget.Interval <= 0 {
		errs = append(errs, errors.New("space_budget.interval must be positive when max_messages is set"))
	}
	if cfg.LinkTemplate != "" {
		if _, err := parseLinkTemplate(cfg.LinkTemplate); err != nil {
			errs = append(errs, err)
		}
	}
	seen := map[string]bool{defaultRuleName: true, budgetRuleName: true}
	for i, r := range cfg.Rules {
		errs = append(errs, r.validate(i, seen))
	}
	return errors.Join(errs...)
}

func (r *RuleConfig) validate(i int, seen map[string]bool) error {
	var errs []error
	where := fmt.Sprintf("rules[%d]", i)
	switch {
	case r.Name == "":
		errs = append(errs, fmt.Errorf("%s: name is required", where))
	case seen[r.Name]:
		errs = append(errs, fmt.Errorf("%s: name %q is used twice or is reserved", where, r.Name))
	default:
		seen[r.Name] = true
	}
	for _, n := range r.EventNames {
		if n == "" || strings.Contains(strings.TrimSuffix(n, "*"), "*") {
			errs = append(errs, fmt.Errorf("%s: event name %q must be non-empty with at most one trailing '*'", where, n))
		}
	}
	for _, risk := range r.Risks {
		if !validRisks[risk] {
			errs = append(errs, fmt.Errorf("%s: risk %q is not one of low, medium, high, critical", where, risk))
		}
	}
	if r.DedupWindow != nil {
		errs = append(errs, validateLimits(where+".", *r.DedupWindow, RateLimitConfig{}))
	}
	if r.RateLimit != nil {
		errs = append(errs, validateLimits(where+".", 0, *r.RateLimit))
	}
	if r.LinkTemplate != "" {
		if _, err := parseLinkTemplate(r.LinkTemplate); err != nil {
			errs = append(errs, fmt.Errorf("%s.%w", where, err))
		}
	}
	return errors.Join(errs...)
}

func validateLimits(prefix string, dedup time.Duration, rl RateLimitConfig) error {
	var errs []error
	if dedup < 0 {
		errs = append(errs, fmt.Errorf("%sdedup_window must not be negative", prefix))
	}
	if rl.MaxMessages < 0 {
		errs = append(errs, fmt.Errorf("%srate_limit.max_messages must not be negative", prefix))
	}
	if rl.MaxMessages > 0 && rl.Interval <= 0 {
		errs = append(errs, fmt.Errorf("%srate_limit.interval must be positive when max_messages is set", prefix))
	}
	return errors.Join(errs...)
}

// validateWebhookURL checks the URL without ever quoting it: url.Parse errors embed the input.
func validateWebhookURL(raw string, allowHTTP bool) error {
	if raw == "" {
		return errors.New("webhook_url is required (the Google Chat space's incoming webhook URL; " +
			"collector-config/pipelines.yaml reads it from AUDITRAIL_GOOGLE_CHAT_WEBHOOK_URL)")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("webhook_url is not an absolute URL (value not shown: it carries a secret)")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if !allowHTTP {
			return errors.New("webhook_url must use https (insecure_allow_http is for tests on a loopback address)")
		}
		if !isLoopback(u.Hostname()) {
			return errors.New("insecure_allow_http only allows a loopback host (127.0.0.1, ::1 or localhost)")
		}
		return nil
	default:
		return errors.New("webhook_url must use https")
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
