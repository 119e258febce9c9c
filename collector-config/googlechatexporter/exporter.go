package googlechatexporter // import "github.com/auditrail/auditrail/collector-config/googlechatexporter"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"text/template"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	nooptrace "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"
)

// Audit attributes (DESIGN.md, "One audit event as an OTel LogRecord").
const (
	attrEventID      = "audit.event_id"
	attrTenant       = "audit.tenant_id"
	attrActor        = "enduser.id"
	attrImpersonator = "audit.impersonator.id"
	attrReason       = "audit.reason"
	attrRisk         = "audit.risk"
	attrOutcome      = "audit.outcome"
	attrEventName    = "event.name" // older emitters put the event name here instead of EventName
	attrSession      = "audit.impersonation.id"
	attrPayload      = "audit.payload"
	attrApprovalID   = "audit.approval.id"
)

// The exporter's own sending queue holds plog.Logs under queueScope: alert records
// copied from the pipeline, and summary records it makes itself. Both survive a
// restart with a persistent queue and get the same retries.
const (
	queueScope     = "github.com/auditrail/auditrail/collector-config/googlechatexporter"
	attrKind       = "googlechat.message" // kindCard or kindSummary
	attrRule       = "googlechat.rule"
	attrCount      = "googlechat.summary.count"
	attrStartNanos = "googlechat.summary.start_unix_nano"
	attrParts      = "googlechat.summary.parts" // a digest's parts, JSON
	kindCard       = "card"
	kindSummary    = "summary"
)

// chatExporter decides per record (rules, dedup, rate limit) in front of exporterhelper,
// which queues and retries the resulting messages and calls pushLogs to post them.
type chatExporter struct {
	cfg       *Config
	telemetry component.TelemetrySettings
	logger    *zap.Logger
	rules     []*rule
	limiter   *limiter
	link      *template.Template
	tick      time.Duration
	now       func() time.Time

	next exporter.Logs // exporterhelper around pushLogs
	hook *webhook      // set by startWebhook
	id   component.ID  // names the state's storage client

	pendingMu sync.Mutex
	pending   []summary // summaries not yet on the queue

	// With a persistent sending queue the limiter's state is kept beside it (state.go), and a shutdown
	// keeps windows open and cuts posts in flight off (stopPosts): both resume after the restart.
	storageID *component.ID
	state     *stateStore
	saveMu    sync.Mutex
	postsCtx  context.Context
	stopPosts context.CancelFunc

	cancel context.CancelFunc
	done   chan struct{}
}

var _ exporter.Logs = (*chatExporter)(nil)

func newChatExporter(cfg *Config, set component.TelemetrySettings) (*chatExporter, error) {
	e := &chatExporter{
		cfg:       cfg,
		telemetry: set,
		logger:    set.Logger,
		limiter:   newLimiter().withBudget(cfg.SpaceBudget.MaxMessages, cfg.SpaceBudget.Interval),
		now:       time.Now,
	}
	rules, err := buildRules(cfg)
	if err != nil {
		return nil, err
	}
	e.rules = rules
	if q := cfg.QueueConfig; q.HasValue() && q.Get().StorageID != nil {
		e.storageID = q.Get().StorageID
	}
	e.postsCtx, e.stopPosts = context.WithCancel(context.Background())
	e.tick = tickInterval(e.rules)
	if cfg.LinkTemplate != "" {
		tmpl, err := parseLinkTemplate(cfg.LinkTemplate)
		if err != nil {
			return nil, err
		}
		e.link = tmpl
	}
	return e, nil
}

// Start starts exporterhelper (and with it the HTTP client), restores the saved state, then the window clock.
func (e *chatExporter) Start(ctx context.Context, host component.Host) error {
	if err := e.next.Start(ctx, host); err != nil {
		return err
	}
	if e.storageID != nil {
		store, err := openStateStore(ctx, host, *e.storageID, e.id)
		if err != nil {
			return err
		}
		st, found, err := store.load(ctx)
		if err != nil {
			e.logger.Error("Google Chat limiter state not restored; starting with empty windows", zap.Error(err))
		}
		if found {
			e.limiter.restore(st, e.rules)
			e.addPending(loadSummaries(st.Pending))
			e.logger.Info("Google Chat limiter state restored", zap.Int("open_windows", len(st.Windows)),
				zap.Int("pending_summaries", len(st.Pending)), zap.Int("budget_folded_groups", len(st.Budget.Held)))
		}
		e.state = store
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan struct{})
	go e.run(loopCtx)
	return nil
}

// Shutdown queues the pending summaries and, with a persistent queue, saves the open windows for the next
// start and cuts posts in flight off (they stay queued); without one it closes every window now and lets
// exporterhelper drain its queue.
func (e *chatExporter) Shutdown(ctx context.Context) error {
	if e.cancel != nil {
		e.cancel()
		<-e.done
	}
	if e.state == nil {
		e.addPending(e.limiter.drain(e.now()))
	}
	e.flushPending(ctx)
	if e.state != nil {
		e.save(ctx)
		e.stopPosts()
	}
	if left := e.takePending(); len(left) > 0 {
		e.logger.Error("Google Chat summaries could not be queued before shutdown",
			zap.Int("summaries", len(left)), zap.Int64("events", countEvents(left)))
	}
	if e.next == nil {
		return nil
	}
	return errors.Join(e.next.Shutdown(ctx), e.state.close(ctx))
}

// save writes the limiter's state and the pending summaries (when the state is kept).
func (e *chatExporter) save(ctx context.Context) {
	if e.state == nil {
		return
	}
	e.saveMu.Lock()
	defer e.saveMu.Unlock()
	st := e.limiter.snapshot()
	e.pendingMu.Lock()
	st.Pending = saveSummaries(e.pending)
	e.pendingMu.Unlock()
	if err := e.state.save(ctx, st); err != nil {
		e.logger.Warn("could not save the Google Chat limiter state; a crash now would lose open window counts",
			zap.Error(err))
	}
}

// Capabilities says the exporter copies what it keeps.
func (e *chatExporter) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

// ConsumeLogs passes each record through its rule's dedup window and rate limit and
// queues a card for those that get through; held-back records are counted for a summary.
func (e *chatExporter) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	now := e.now()
	out := plog.NewLogs()
	cards := newQueueScope(out)
	var ids []string
	var summaries []summary
	duplicates := 0
	forEachRecord(ld, func(_ string, lr plog.LogRecord) {
		a := alertFromRecord(lr)
		r := matchRule(e.rules, a.EventName, a.Risk)
		d, closed := e.limiter.admit(r, a.Tenant, a.EventName, a.EventID, now)
		summaries = append(summaries, closed...)
		switch d {
		case decisionSend:
			dst := cards.LogRecords().AppendEmpty()
			lr.CopyTo(dst)
			if dst.Timestamp() == 0 && dst.ObservedTimestamp() == 0 {
				dst.SetTimestamp(pcommon.NewTimestampFromTime(now))
			}
			dst.Attributes().PutStr(attrKind, kindCard)
			dst.Attributes().PutStr(attrRule, r.name)
			if a.EventID != "" {
				ids = append(ids, a.EventID)
			}
		case decisionDuplicate:
			duplicates++
		}
	})
	if duplicates > 0 {
		e.logger.Debug("ignored records whose audit.event_id was seen recently", zap.Int("records", duplicates))
	}
	e.addPending(summaries)
	if cards.LogRecords().Len() > 0 {
		if err := e.next.ConsumeLogs(ctx, out); err != nil {
			// Not queued: let a redelivery of these events through instead of calling it a duplicate.
			e.limiter.forget(ids)
			e.save(ctx)
			return err
		}
	}
	// Before the answer: a request the receiver acknowledged has its counts on disk.
	e.save(ctx)
	return nil
}

// run closes elapsed windows on every tick and queues their summaries.
func (e *chatExporter) run(ctx context.Context) {
	defer close(e.done)
	ticker := time.NewTicker(e.tick)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			due := e.limiter.due(e.now())
			e.addPending(due)
			if e.flushPending(ctx) || len(due) > 0 {
				e.save(ctx)
			}
		}
	}
}

// flushPending queues the pending summaries; those that could not be queued stay pending. It says whether
// there were any.
func (e *chatExporter) flushPending(ctx context.Context) bool {
	summaries := e.takePending()
	if len(summaries) == 0 {
		return false
	}
	err := e.next.ConsumeLogs(ctx, summariesToLogs(summaries))
	if err == nil {
		return true
	}
	if consumererror.IsPermanent(err) {
		e.logger.Error("Google Chat rejected summaries; dropping them",
			zap.Int("summaries", len(summaries)), zap.Int64("events", countEvents(summaries)), zap.Error(err))
		return true
	}
	if failed, ok := errors.AsType[consumererror.Logs](err); ok {
		summaries = summariesFromLogs(failed.Data())
	}
	e.logger.Warn("could not queue Google Chat summaries; trying again on the next tick",
		zap.Int("summaries", len(summaries)), zap.Error(err))
	e.pendingMu.Lock()
	e.pending = append(summaries, e.pending...)
	e.pendingMu.Unlock()
	return true
}

func (e *chatExporter) addPending(s []summary) {
	if len(s) == 0 {
		return
	}
	e.pendingMu.Lock()
	e.pending = append(e.pending, s...)
	e.pendingMu.Unlock()
}

func (e *chatExporter) takePending() []summary {
	e.pendingMu.Lock()
	defer e.pendingMu.Unlock()
	s := e.pending
	e.pending = nil
	return s
}

// startWebhook builds the HTTP client. Its spans would record url.full, key and token
// included, so the client gets a no-op tracer; its metrics name only host and status.
func (e *chatExporter) startWebhook(ctx context.Context, host component.Host) error {
	set := e.telemetry
	set.TracerProvider = nooptrace.NewTracerProvider()
	client, err := e.cfg.ClientConfig.ToClient(ctx, host.GetExtensions(), set)
	if err != nil {
		return fmt.Errorf("googlechat: create HTTP client: %w", err)
	}
	hook, err := newWebhook(client, string(e.cfg.WebhookURL))
	if err != nil {
		return err
	}
	e.hook = hook
	return nil
}

func (e *chatExporter) closeWebhook(context.Context) error {
	if e.hook != nil {
		e.hook.client.CloseIdleConnections()
	}
	return nil
}

// pushLogs posts one message per queued record. On a retryable failure it hands back
// the records not yet sent, so exporterhelper retries only those and none is posted twice.
func (e *chatExporter) pushLogs(ctx context.Context, ld plog.Logs) error {
	if e.hook == nil {
		return errors.New("googlechat exporter is not started")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.postsCtx, cancel)()
	var rejected []error
	total, index := ld.LogRecordCount(), 0
	var retry error
	forEachRecord(ld, func(scope string, lr plog.LogRecord) {
		if retry != nil {
			return
		}
		msg, key, a := e.render(scope, lr)
		if err := e.hook.post(ctx, msg, key); err != nil {
			if !consumererror.IsPermanent(err) {
				retry = consumererror.NewLogs(err, logsFrom(ld, index))
				return
			}
			e.logger.Error("Google Chat rejected a message; dropping it",
				zap.String("event_name", a.EventName), zap.String("tenant", a.Tenant),
				zap.String("event_id", a.EventID), zap.Error(err))
			rejected = append(rejected, err)
		}
		index++
	})
	if retry != nil {
		return retry
	}
	if len(rejected) > 0 {
		return consumererror.NewPermanent(fmt.Errorf("google chat rejected %d of %d messages: %w",
			len(rejected), total, errors.Join(rejected...)))
	}
	return nil
}

// render turns one queued record into a Chat message and its thread key.
func (e *chatExporter) render(scope string, lr plog.LogRecord) (chatMessage, string, alert) {
	a := alertFromRecord(lr)
	if kind, ok := lr.Attributes().Get(attrKind); scope == queueScope && ok && kind.Str() == kindSummary {
		s := summaryFromRecord(lr)
		if s.rule == budgetRuleName {
			return digestCard(s), "auditrail/" + budgetRuleName, a
		}
		return summaryCard(s), threadKey(s.tenant, s.event), a
	}
	tmpl, text := e.link, e.cfg.LinkText
	if r := e.ruleNamed(a.Rule); r != nil && r.link != nil {
		tmpl, text = r.link, r.linkText
	}
	link := ""
	if tmpl != nil {
		var err error
		if link, err = renderLink(tmpl, a); err != nil {
			e.logger.Warn("card sent without its link", zap.String("event_id", a.EventID), zap.Error(err))
		}
	}
	return alertCard(a, link, text), threadKey(a.Tenant, a.EventName), a
}

// ruleNamed is the rule a queued card was admitted by (its name is kept on the record), nil if none is.
func (e *chatExporter) ruleNamed(name string) *rule {
	for _, r := range e.rules {
		if r.name == name {
			return r
		}
	}
	return nil
}

func alertFromRecord(lr plog.LogRecord) alert {
	attrs := lr.Attributes()
	get := func(k string) string {
		if v, ok := attrs.Get(k); ok {
			return v.AsString()
		}
		return ""
	}
	a := alert{
		Rule:         get(attrRule),
		EventName:    lr.EventName(),
		EventID:      get(attrEventID),
		Tenant:       get(attrTenant),
		Actor:        get(attrActor),
		Impersonator: get(attrImpersonator),
		Reason:       get(attrReason),
		Risk:         get(attrRisk),
		Outcome:      get(attrOutcome),
		Session:      get(attrSession),
		ApprovalID:   get(attrApprovalID),
		Time:         lr.Timestamp().AsTime(),
	}
	if raw := get(attrPayload); raw != "" {
		var payload map[string]any
		if json.Unmarshal([]byte(raw), &payload) == nil {
			a.Payload = payload
		}
	}
	if a.EventName == "" {
		a.EventName = get(attrEventName)
	}
	if lr.Timestamp() == 0 {
		a.Time = lr.ObservedTimestamp().AsTime()
	}
	return a
}

func summariesToLogs(summaries []summary) plog.Logs {
	ld := plog.NewLogs()
	records := newQueueScope(ld).LogRecords()
	for _, s := range summaries {
		lr := records.AppendEmpty()
		lr.SetEventName(s.event)
		lr.SetTimestamp(pcommon.NewTimestampFromTime(s.end))
		attrs := lr.Attributes()
		attrs.PutStr(attrKind, kindSummary)
		attrs.PutStr(attrRule, s.rule)
		attrs.PutStr(attrTenant, s.tenant)
		attrs.PutInt(attrCount, s.count)
		attrs.PutInt(attrStartNanos, s.start.UnixNano())
		if len(s.parts) > 0 {
			if raw, err := json.Marshal(s.parts); err == nil {
				attrs.PutStr(attrParts, string(raw))
			}
		}
	}
	return ld
}

func summaryFromRecord(lr plog.LogRecord) summary {
	attrs := lr.Attributes()
	s := summary{event: lr.EventName(), end: lr.Timestamp().AsTime()}
	if v, ok := attrs.Get(attrRule); ok {
		s.rule = v.Str()
	}
	if v, ok := attrs.Get(attrTenant); ok {
		s.tenant = v.Str()
	}
	if v, ok := attrs.Get(attrCount); ok {
		s.count = v.Int()
	}
	if v, ok := attrs.Get(attrStartNanos); ok {
		s.start = time.Unix(0, v.Int())
	}
	if v, ok := attrs.Get(attrParts); ok {
		_ = json.Unmarshal([]byte(v.Str()), &s.parts)
	}
	return s
}

func summariesFromLogs(ld plog.Logs) []summary {
	var out []summary
	forEachRecord(ld, func(_ string, lr plog.LogRecord) { out = append(out, summaryFromRecord(lr)) })
	return out
}

func countEvents(summaries []summary) int64 {
	var n int64
	for _, s := range summaries {
		n += s.count
	}
	return n
}

func newQueueScope(ld plog.Logs) plog.ScopeLogs {
	sl := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
	sl.Scope().SetName(queueScope)
	return sl
}

// forEachRecord visits every record with the name of its scope, in order.
func forEachRecord(ld plog.Logs, fn func(scope string, lr plog.LogRecord)) {
	rls := ld.ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		sls := rls.At(i).ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			sl := sls.At(j)
			records := sl.LogRecords()
			for k := 0; k < records.Len(); k++ {
				fn(sl.Scope().Name(), records.At(k))
			}
		}
	}
}

// logsFrom copies the records from position skip on (in forEachRecord order), keeping their
// resource and scope, for a retry of what was not sent yet.
func logsFrom(ld plog.Logs, skip int) plog.Logs {
	out := plog.NewLogs()
	index := 0
	rls := ld.ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		var dstRL plog.ResourceLogs
		haveRL := false
		sls := rls.At(i).ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			var dstSL plog.ScopeLogs
			haveSL := false
			records := sls.At(j).LogRecords()
			for k := 0; k < records.Len(); k++ {
				if index++; index <= skip {
					continue
				}
				if !haveRL {
					dstRL = out.ResourceLogs().AppendEmpty()
					rls.At(i).Resource().CopyTo(dstRL.Resource())
					dstRL.SetSchemaUrl(rls.At(i).SchemaUrl())
					haveRL = true
				}
				if !haveSL {
					dstSL = dstRL.ScopeLogs().AppendEmpty()
					sls.At(j).Scope().CopyTo(dstSL.Scope())
					dstSL.SetSchemaUrl(sls.At(j).SchemaUrl())
					haveSL = true
				}
				records.At(k).CopyTo(dstSL.LogRecords().AppendEmpty())
			}
		}
	}
	return out
}
