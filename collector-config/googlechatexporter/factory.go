package googlechatexporter // import "github.com/auditrail/auditrail/collector-config/googlechatexporter"

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"

	"github.com/auditrail/auditrail/collector-config/googlechatexporter/internal/metadata"
)

// NewFactory creates a factory for the googlechat exporter (logs only).
func NewFactory() exporter.Factory {
	return exporter.NewFactory(
		metadata.Type,
		createDefaultConfig,
		exporter.WithLogs(createLogsExporter, metadata.LogsStability),
	)
}

func createDefaultConfig() component.Config {
	clientConfig := confighttp.NewDefaultClientConfig()
	clientConfig.Timeout = 10 * time.Second
	return &Config{
		ClientConfig: clientConfig,
		QueueConfig:  configoptional.Some(exporterhelper.NewDefaultQueueConfig()),
		RetryConfig:  configretry.NewDefaultBackOffConfig(),
		LinkText:     "Open",
		DedupWindow:  time.Minute,
		RateLimit:    RateLimitConfig{MaxMessages: 10, Interval: time.Minute},
		// Google Chat takes about one message a second per space; a third of that leaves room for people.
		SpaceBudget: RateLimitConfig{MaxMessages: 20, Interval: time.Minute},
	}
}

func createLogsExporter(ctx context.Context, set exporter.Settings, config component.Config) (exporter.Logs, error) {
	cfg := config.(*Config)
	e, err := newChatExporter(cfg, set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	e.id = set.ID
	next, err := exporterhelper.NewLogs(ctx, set, cfg, e.pushLogs,
		exporterhelper.WithStart(e.startWebhook),
		exporterhelper.WithShutdown(e.closeWebhook),
		exporterhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}),
		// The HTTP client's timeout bounds each post; a batch may hold several posts.
		exporterhelper.WithTimeout(exporterhelper.TimeoutConfig{Timeout: 0}),
		exporterhelper.WithRetry(cfg.RetryConfig),
		exporterhelper.WithQueue(cfg.QueueConfig),
	)
	if err != nil {
		return nil, err
	}
	e.next = next
	return e, nil
}
