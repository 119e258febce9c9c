package awscloudwatchlogsexporter // import "github.com/auditrail/auditrail/collector-config/awscloudwatchlogsexporter"

import (
	"encoding/json"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
)

// resentMarker flags a record rebuilt for a retry: its body already is the final message.
const resentMarker = "awscloudwatchlogs.resent"

// document is one log record as CloudWatch receives it (raw_log: false), the shape contrib's exporter uses
// plus event_name and scope, which audit events need.
type document struct {
	Body           any            `json:"body"`
	EventName      string         `json:"event_name,omitempty"`
	SeverityNumber int32          `json:"severity_number,omitempty"`
	SeverityText   string         `json:"severity_text,omitempty"`
	Flags          uint32         `json:"flags,omitempty"`
	TraceID        string         `json:"trace_id,omitempty"`
	SpanID         string         `json:"span_id,omitempty"`
	Attributes     map[string]any `json:"attributes,omitempty"`
	Resource       map[string]any `json:"resource,omitempty"`
	Scope          *scope         `json:"scope,omitempty"`
}

type scope struct {
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
}

func (e *logsExporter) toEvents(ld plog.Logs) ([]types.InputLogEvent, error) {
	events := make([]types.InputLogEvent, 0, ld.LogRecordCount())
	now := time.Now()
	rls := ld.ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		rl := rls.At(i)
		resource := rl.Resource().Attributes().AsRaw()
		sls := rl.ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			sl := sls.At(j)
			var sc *scope
			if sl.Scope().Name() != "" {
				sc = &scope{Name: sl.Scope().Name(), Version: sl.Scope().Version()}
			}
			lrs := sl.LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				lr := lrs.At(k)
				msg, err := e.message(lr, resource, sc)
				if err != nil {
					return nil, err
				}
				if len(msg) > maxMessageBytes {
					msg = msg[:maxMessageBytes]
				}
				events = append(events, types.InputLogEvent{
					Message:   aws.String(msg),
					Timestamp: aws.Int64(recordTime(lr, now).UnixMilli()),
				})
			}
		}
	}
	return events, nil
}

func (e *logsExporter) message(lr plog.LogRecord, resource map[string]any, sc *scope) (string, error) {
	if e.cfg.RawLog {
		return lr.Body().AsString(), nil
	}
	if v, ok := lr.Attributes().Get(resentMarker); ok && v.Bool() {
		return lr.Body().AsString(), nil
	}
	doc := document{
		Body:           lr.Body().AsRaw(),
		EventName:      lr.EventName(),
		SeverityNumber: int32(lr.SeverityNumber()),
		SeverityText:   lr.SeverityText(),
		Flags:          uint32(lr.Flags()),
		Attributes:     lr.Attributes().AsRaw(),
		Resource:       resource,
		Scope:          sc,
	}
	if !lr.TraceID().IsEmpty() {
		doc.TraceID = lr.TraceID().String()
	}
	if !lr.SpanID().IsEmpty() {
		doc.SpanID = lr.SpanID().String()
	}
	b, err := json.Marshal(doc)
	return string(b), err
}

func recordTime(lr plog.LogRecord, now time.Time) time.Time {
	if ts := lr.Timestamp(); ts != 0 {
		return ts.AsTime()
	}
	if ts := lr.ObservedTimestamp(); ts != 0 {
		return ts.AsTime()
	}
	return now
}

func msToTimestamp(ms int64) pcommon.Timestamp {
	return pcommon.NewTimestampFromTime(time.UnixMilli(ms))
}
