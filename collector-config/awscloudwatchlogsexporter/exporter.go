package awscloudwatchlogsexporter // import "github.com/auditrail/auditrail/collector-config/awscloudwatchlogsexporter"

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.uber.org/zap"
)

// PutLogEvents limits: 10,000 events and 1,048,576 bytes per call, each event counted with 26 bytes of overhead.
const (
	maxEventsPerCall = 10000
	maxBytesPerCall  = 1048576
	eventOverhead    = 26
	maxMessageBytes  = 256*1024 - eventOverhead
)

type logsExporter struct {
	exporter.Logs // exporterhelper around pushLogs

	// stopCtx is cancelled when Shutdown begins with a persistent queue: calls in flight end at once, the
	// retry sender reports a shutdown and the queue keeps their records for the next start (instead of the
	// collector waiting up to `timeout` for them).
	stopCtx context.Context
	stop    context.CancelFunc

	cfg    *Config
	logger *zap.Logger
	client *cloudwatchlogs.Client

	mu      sync.Mutex
	created bool // the group and stream exist (checked once per process, then on ResourceNotFound)
}

func newLogsExporter(cfg *Config, set exporter.Settings) *logsExporter {
	stopCtx, stop := context.WithCancel(context.Background())
	return &logsExporter{cfg: cfg, logger: set.Logger, stopCtx: stopCtx, stop: stop}
}

// Shutdown cancels the calls in flight when the queue is persistent (an in-memory queue is drained
// instead: cutting its calls off would lose them), then lets exporterhelper stop its queue.
func (e *logsExporter) Shutdown(ctx context.Context) error {
	if q := e.cfg.QueueSettings; q.HasValue() && q.Get().StorageID != nil {
		e.stop()
	}
	return e.Logs.Shutdown(ctx)
}

func (e *logsExporter) start(ctx context.Context, _ component.Host) error {
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(e.cfg.Region))
	if err != nil {
		return fmt.Errorf("load AWS configuration: %w", err)
	}
	e.client = cloudwatchlogs.NewFromConfig(awsCfg, func(o *cloudwatchlogs.Options) {
		if e.cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(e.cfg.Endpoint)
		}
		// exporterhelper retries (without giving up when configured so); the SDK's own retries would
		// only stack up behind it.
		o.RetryMaxAttempts = 1
	})
	return nil
}

// ensureDestination creates the group and stream when missing; ResourceAlreadyExists is success.
func (e *logsExporter) ensureDestination(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.created {
		return nil
	}
	var exists *types.ResourceAlreadyExistsException
	if _, err := e.client.CreateLogGroup(ctx, &cloudwatchlogs.CreateLogGroupInput{
		LogGroupName: aws.String(e.cfg.LogGroupName),
	}); err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("create log group: %w", err)
	}
	if _, err := e.client.CreateLogStream(ctx, &cloudwatchlogs.CreateLogStreamInput{
		LogGroupName:  aws.String(e.cfg.LogGroupName),
		LogStreamName: aws.String(e.cfg.LogStreamName),
	}); err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("create log stream: %w", err)
	}
	e.created = true
	return nil
}

func (e *logsExporter) pushLogs(ctx context.Context, ld plog.Logs) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.stopCtx, cancel)()
	events, err := e.toEvents(ld)
	if err != nil {
		return consumererror.NewPermanent(err)
	}
	if len(events) == 0 {
		return nil
	}
	if err := e.ensureDestination(ctx); err != nil {
		return err
	}
	// CloudWatch requires each call's events in time order.
	sort.SliceStable(events, func(i, j int) bool { return *events[i].Timestamp < *events[j].Timestamp })
	for start := 0; start < len(events); {
		end, size := start, 0
		for end < len(events) && end-start < maxEventsPerCall {
			n := len(*events[end].Message) + eventOverhead
			if size+n > maxBytesPerCall {
				break
			}
			size += n
			end++
		}
		if err := e.put(ctx, events[start:end]); err != nil {
			// The calls before this one went through; resend only the rest.
			return consumererror.NewLogs(err, e.unsent(events[start:]))
		}
		start = end
	}
	return nil
}

func (e *logsExporter) put(ctx context.Context, events []types.InputLogEvent) error {
	in := &cloudwatchlogs.PutLogEventsInput{
		LogGroupName:  aws.String(e.cfg.LogGroupName),
		LogStreamName: aws.String(e.cfg.LogStreamName),
		LogEvents:     events,
	}
	out, err := e.client.PutLogEvents(ctx, in)
	var missing *types.ResourceNotFoundException
	if errors.As(err, &missing) {
		e.mu.Lock()
		e.created = false
		e.mu.Unlock()
		if err = e.ensureDestination(ctx); err == nil {
			out, err = e.client.PutLogEvents(ctx, in)
		}
	}
	if err != nil {
		return err
	}
	if r := out.RejectedLogEventsInfo; r != nil {
		e.logger.Warn("CloudWatch Logs rejected events",
			zap.Int32p("too_old_end_index", r.TooOldLogEventEndIndex),
			zap.Int32p("too_new_start_index", r.TooNewLogEventStartIndex),
			zap.Int32p("expired_end_index", r.ExpiredLogEventEndIndex))
	}
	return nil
}

// unsent rebuilds, for a retry, the records whose events were not sent.
func (e *logsExporter) unsent(events []types.InputLogEvent) plog.Logs {
	out := plog.NewLogs()
	sl := out.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
	for _, ev := range events {
		lr := sl.LogRecords().AppendEmpty()
		lr.SetTimestamp(msToTimestamp(*ev.Timestamp))
		if e.cfg.RawLog {
			lr.Body().SetStr(*ev.Message)
			continue
		}
		// The JSON document is resent as the raw body so that nothing is encoded twice.
		lr.Body().SetStr(*ev.Message)
		lr.Attributes().PutBool(resentMarker, true)
	}
	return out
}
