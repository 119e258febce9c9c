package awscloudwatchlogsexporter

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.uber.org/zap/zaptest"
)

// fakeCloudWatch speaks CloudWatch Logs' JSON protocol (X-Amz-Target) for the three calls the exporter makes.
type fakeCloudWatch struct {
	mu        sync.Mutex
	calls     [][]map[string]any // the logEvents of each PutLogEvents call
	created   []string
	failPutAt int // 1-based PutLogEvents call that answers 500; 0: none
}

func (f *fakeCloudWatch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var in map[string]any
	_ = json.Unmarshal(body, &in)
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	switch r.Header.Get("X-Amz-Target") {
	case "Logs_20140328.CreateLogGroup", "Logs_20140328.CreateLogStream":
		f.created = append(f.created, r.Header.Get("X-Amz-Target"))
		_, _ = w.Write([]byte("{}"))
	case "Logs_20140328.PutLogEvents":
		if f.failPutAt == len(f.calls)+1 {
			f.failPutAt = 0
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"__type":"ServiceUnavailableException","message":"try later"}`))
			return
		}
		var events []map[string]any
		for _, e := range in["logEvents"].([]any) {
			events = append(events, e.(map[string]any))
		}
		f.calls = append(f.calls, events)
		_, _ = w.Write([]byte(`{"nextSequenceToken":"1"}`))
	default:
		w.WriteHeader(http.StatusBadRequest)
	}
}

func startExporter(t *testing.T, fake *fakeCloudWatch, rawLog bool) *logsExporter {
	t.Helper()
	server := httptest.NewServer(fake)
	t.Cleanup(server.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	cfg := createDefaultConfig().(*Config)
	cfg.Region, cfg.Endpoint = "us-east-1", server.URL
	cfg.LogGroupName, cfg.LogStreamName = "/auditrail/test", "s1"
	cfg.RawLog = rawLog
	e := newLogsExporter(cfg, exportertest.NewNopSettings(componentType))
	if err := e.start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	return e
}

func records(n int, at func(i int) time.Time) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "assistant-admin")
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("auditrail")
	for i := 0; i < n; i++ {
		lr := sl.LogRecords().AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(at(i)))
		lr.SetEventName("prompt.update")
		lr.Body().SetStr("prompt.update by alice")
		lr.Attributes().PutStr("audit.event_id", time.Duration(i).String())
	}
	return ld
}

func TestSendsJSONDocumentsInTimeOrderAndCreatesTheDestination(t *testing.T) {
	fake := &fakeCloudWatch{}
	e := startExporter(t, fake, false)
	base := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	// Newest first: CloudWatch rejects a call whose events are not in time order.
	ld := records(3, func(i int) time.Time { return base.Add(time.Duration(3-i) * time.Second) })
	if err := e.pushLogs(context.Background(), ld); err != nil {
		t.Fatal(err)
	}
	if len(fake.created) != 2 || len(fake.calls) != 1 || len(fake.calls[0]) != 3 {
		t.Fatalf("created %v, calls %d", fake.created, len(fake.calls))
	}
	var last float64
	for _, ev := range fake.calls[0] {
		ts := ev["timestamp"].(float64)
		if ts < last {
			t.Fatalf("events out of order: %v", fake.calls[0])
		}
		last = ts
		var doc document
		if err := json.Unmarshal([]byte(ev["message"].(string)), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.EventName != "prompt.update" || doc.Resource["service.name"] != "assistant-admin" ||
			doc.Scope == nil || doc.Scope.Name != "auditrail" || doc.Attributes["audit.event_id"] == nil {
			t.Fatalf("unexpected document %+v", doc)
		}
	}
}

func TestSplitsAtTenThousandEventsPerCall(t *testing.T) {
	fake := &fakeCloudWatch{}
	e := startExporter(t, fake, true) // short raw messages: the count limit comes before the 1 MiB one
	now := time.Now()
	if err := e.pushLogs(context.Background(), records(maxEventsPerCall+5, func(int) time.Time { return now })); err != nil {
		t.Fatal(err)
	}
	if len(fake.calls) != 2 || len(fake.calls[0]) != maxEventsPerCall || len(fake.calls[1]) != 5 {
		t.Fatalf("calls of %d and %d events", len(fake.calls[0]), len(fake.calls[1]))
	}
}

func TestSplitsAtOneMebibytePerCall(t *testing.T) {
	fake := &fakeCloudWatch{}
	e := startExporter(t, fake, false)
	now := time.Now()
	if err := e.pushLogs(context.Background(), records(8000, func(int) time.Time { return now })); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, call := range fake.calls {
		size := 0
		for _, ev := range call {
			size += len(ev["message"].(string)) + eventOverhead
		}
		if size > maxBytesPerCall {
			t.Fatalf("a call of %d bytes", size)
		}
		total += len(call)
	}
	if len(fake.calls) < 2 || total != 8000 {
		t.Fatalf("%d calls, %d events", len(fake.calls), total)
	}
}

func TestAFailedCallRetriesOnlyWhatWasNotSent(t *testing.T) {
	fake := &fakeCloudWatch{failPutAt: 2}
	e := startExporter(t, fake, false)
	now := time.Now()
	const n = 8000 // more than one call's worth of JSON documents
	err := e.pushLogs(context.Background(), records(n, func(int) time.Time { return now }))
	var partial consumererror.Logs
	if !errors.As(err, &partial) {
		t.Fatalf("want a consumererror.Logs, got %v", err)
	}
	sent := len(fake.calls[0])
	rest := partial.Data()
	if rest.LogRecordCount() != n-sent {
		t.Fatalf("retry carries %d records, want the %d unsent", rest.LogRecordCount(), n-sent)
	}
	// The retry sends them as they were encoded the first time, nothing twice.
	if err := e.pushLogs(context.Background(), rest); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, call := range fake.calls {
		total += len(call)
	}
	if total != n {
		t.Fatalf("%d events delivered, want %d", total, n)
	}
	var doc document
	last := fake.calls[len(fake.calls)-1]
	if err := json.Unmarshal([]byte(last[0]["message"].(string)), &doc); err != nil || doc.EventName != "prompt.update" {
		t.Fatalf("resent message is not the original document: %v %+v", err, doc)
	}
}

// A call in flight when the collector shuts down ends at once instead of holding up the shutdown for the
// whole `timeout`, and its records stay in the persistent queue: the next start sends them.
func TestShutdownCutsOffACallInFlightAndTheNextStartSendsItsRecords(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	storage := component.MustNewID("file_storage")
	dir := t.TempDir()
	start := func(endpoint string) component.Component {
		cfg := createDefaultConfig().(*Config)
		cfg.Region, cfg.Endpoint = "us-east-1", endpoint
		cfg.LogGroupName, cfg.LogStreamName = "/auditrail/test", "s1"
		cfg.QueueSettings.Get().StorageID = &storage
		set := exportertest.NewNopSettings(componentType)
		set.ID = component.NewID(componentType) // the same id at each start: it names the queue's file
		set.Logger = zaptest.NewLogger(t)
		exp, err := createLogsExporter(context.Background(), set, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := exp.Start(context.Background(), fileStorageHost(t, storage, dir)); err != nil {
			t.Fatal(err)
		}
		return exp
	}

	hung, calls := make(chan struct{}), make(chan struct{}, 10)
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Target") == "Logs_20140328.PutLogEvents" {
			calls <- struct{}{}
			<-hung
		}
		_, _ = w.Write([]byte("{}"))
	}))
	t.Cleanup(func() { close(hung); server.Close() })
	first := start(server.URL)
	if err := first.(interface {
		ConsumeLogs(context.Context, plog.Logs) error
	}).ConsumeLogs(context.Background(), records(3, func(int) time.Time { return time.Now() })); err != nil {
		t.Fatal(err)
	}
	select {
	case <-calls: // the PutLogEvents call now waits on the server
	case <-time.After(5 * time.Second):
		t.Fatal("no PutLogEvents call")
	}
	began := time.Now()
	if err := first.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Fatalf("shutdown took %v with a call in flight", took)
	}
	shutdownStorage(t, storage)

	fake := &fakeCloudWatch{}
	healthy := httptest.NewServer(fake)
	t.Cleanup(healthy.Close)
	second := start(healthy.URL)
	t.Cleanup(func() { _ = second.Shutdown(context.Background()) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		fake.mu.Lock()
		n := 0
		for _, c := range fake.calls {
			n += len(c)
		}
		fake.mu.Unlock()
		if n == 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the next start sent %d of the 3 records cut off by the shutdown", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// storageHost is a collector host with one extension: contrib's file_storage in a test directory.
type storageHost struct {
	extensions map[component.ID]component.Component
}

func (h storageHost) GetExtensions() map[component.ID]component.Component { return h.extensions }

var openStorage = map[component.ID]component.Component{}

// fileStorageHost starts file_storage on dir (a second start on the same dir sees what the first wrote).
func fileStorageHost(t *testing.T, id component.ID, dir string) storageHost {
	t.Helper()
	factory := filestorage.NewFactory()
	cfg := factory.CreateDefaultConfig().(*filestorage.Config)
	cfg.Directory = dir
	cfg.Compaction.Directory = cfg.Directory
	ext, err := factory.Create(context.Background(), extensiontest.NewNopSettings(factory.Type()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := ext.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	openStorage[id] = ext
	t.Cleanup(func() { shutdownStorage(t, id) })
	return storageHost{extensions: map[component.ID]component.Component{id: ext}}
}

func shutdownStorage(t *testing.T, id component.ID) {
	t.Helper()
	if ext, ok := openStorage[id]; ok {
		delete(openStorage, id)
		if err := ext.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
