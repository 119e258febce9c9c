package googlecloudexporter // import "github.com/auditrail/auditrail/collector-config/googlecloudexporter"

import (
	"context"
	"errors"
	"strings"

	contrib "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/googlecloudexporter"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/pdata/plog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var contribFactory = contrib.NewFactory()

// NewFactory creates the googlecloud exporter's factory (logs only: the auditrail collector sends no
// traces or metrics to Google Cloud).
func NewFactory() exporter.Factory {
	return exporter.NewFactory(contribFactory.Type(), createDefaultConfig,
		exporter.WithLogs(createLogsExporter, component.StabilityLevelBeta))
}

func createDefaultConfig() component.Config {
	return &Config{
		Config:      *contribFactory.CreateDefaultConfig().(*contrib.Config),
		RetryConfig: configretry.NewDefaultBackOffConfig(),
	}
}

func createLogsExporter(ctx context.Context, set exporter.Settings, cfg component.Config) (exporter.Logs, error) {
	c := cfg.(*Config)
	// contrib's exporter, without its queue: each write runs inside our queue consumer and its error comes back.
	inner := c.Config
	inner.QueueSettings = configoptional.None[exporterhelper.QueueBatchConfig]()
	innerSet := set
	// Its own id, so the collector's metrics do not count each record twice under "googlecloud".
	innerSet.ID = component.NewIDWithName(set.ID.Type(), strings.TrimPrefix(set.ID.Name()+"_write", "_"))
	writer, err := contribFactory.CreateLogs(ctx, innerSet, &inner)
	if err != nil {
		return nil, err
	}
	stopCtx, stop := context.WithCancel(context.Background())
	q := c.QueueSettings
	persistent := q.HasValue() && q.Get().StorageID != nil
	e := &logsExporter{writer: writer, persistent: persistent, stopCtx: stopCtx, stop: stop}
	helper, err := exporterhelper.NewLogs(ctx, set, cfg, e.push,
		exporterhelper.WithStart(writer.Start),
		exporterhelper.WithShutdown(writer.Shutdown),
		exporterhelper.WithCapabilities(consumer.Capabilities{MutatesData: true}),
		// contrib's exporter bounds each call with its own `timeout`.
		exporterhelper.WithTimeout(exporterhelper.TimeoutConfig{Timeout: 0}),
		exporterhelper.WithRetry(c.RetryConfig),
		exporterhelper.WithQueue(c.QueueSettings),
	)
	if err != nil {
		return nil, err
	}
	e.Logs = helper
	return e, nil
}

// logsExporter cancels the writes in flight when the collector shuts down, before exporterhelper waits for
// its queue consumers: the retry sender then reports a shutdown, and the persistent queue keeps the request.
// An in-memory queue is drained instead (cutting its writes off would lose them).
type logsExporter struct {
	exporter.Logs // exporterhelper around push
	writer        exporter.Logs
	persistent    bool

	stopCtx context.Context // cancelled when Shutdown begins
	stop    context.CancelFunc
}

func (e *logsExporter) Shutdown(ctx context.Context) error {
	if e.persistent {
		e.stop()
	}
	return e.Logs.Shutdown(ctx)
}

func (e *logsExporter) push(ctx context.Context, ld plog.Logs) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.stopCtx, cancel)()
	return classify(e.writer.ConsumeLogs(ctx, ld))
}

// classify makes the errors that a retry cannot fix permanent: a request Cloud Logging refuses as
// malformed would otherwise be retried for ever (with partial_success, its valid entries again each time).
func classify(err error) error {
	if err == nil {
		return nil
	}
	for _, e := range leaves(err) {
		if s, ok := status.FromError(e); ok {
			switch s.Code() {
			case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented:
				return consumererror.NewPermanent(err)
			}
		}
	}
	return err
}

// leaves flattens joined and wrapped errors.
func leaves(err error) []error {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range joined.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	if next := errors.Unwrap(err); next != nil {
		return append([]error{err}, leaves(next)...)
	}
	return []error{err}
}
