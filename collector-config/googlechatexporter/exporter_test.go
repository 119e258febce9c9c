package googlechatexporter

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/auditrail/auditrail/collector-config/googlechatexporter/internal/metadata"
)

// The secret parts of the test webhook URL; none may appear in an error or a log line.
const (
	testSpace = "SPACEsecret42"
	testKey   = "AIzaSy-test-key-0123456789"
	testToken = "tok-secret-0123456789abcdef"
)

var secrets = []string{testSpace, testKey, testToken}

// webhookPost is one message the fake Google Chat accepted.
type webhookPost struct {
	at    time.Time
	query url.Values
	msg   chatMessage
}

func (p webhookPost) title() string { return p.msg.CardsV2[0].Card.Header.Title }

// fakeChat is a local Google Chat webhook receiver on 127.0.0.1.
type fakeChat struct {
	mu       sync.Mutex
	posts    []webhookPost
	attempts int
	// respond picks the status and body for the n-th attempt (1-based); nil means 200.
	respond func(n int, r *http.Request) (int, string)
	srv     *httptest.Server
}

func newFakeChat(t *testing.T) *fakeChat {
	f := &fakeChat{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msg chatMessage
		decodeErr := json.NewDecoder(r.Body).Decode(&msg)
		f.mu.Lock()
		f.attempts++
		n, respond := f.attempts, f.respond
		f.mu.Unlock()
		status, body := http.StatusOK, "{}"
		if respond != nil {
			status, body = respond(n, r)
		}
		if decodeErr != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json; charset=UTF-8" {
			status, body = http.StatusBadRequest, "bad request"
		}
		if status < 300 {
			f.mu.Lock()
			f.posts = append(f.posts, webhookPost{at: time.Now(), query: r.URL.Query(), msg: msg})
			f.mu.Unlock()
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeChat) url() string {
	return f.srv.URL + "/v1/spaces/" + testSpace + "/messages?key=" + testKey + "&token=" + testToken
}

func (f *fakeChat) snapshot() ([]webhookPost, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]webhookPost(nil), f.posts...), f.attempts
}

func (f *fakeChat) waitPosts(t *testing.T, n int) []webhookPost {
	t.Helper()
	require.Eventually(t, func() bool { p, _ := f.snapshot(); return len(p) >= n }, 5*time.Second, 5*time.Millisecond,
		"waiting for %d posts", n)
	p, _ := f.snapshot()
	return p
}

type testExporter struct {
	exporter.Logs
	logs *observer.ObservedLogs
	once sync.Once
}

func (e *testExporter) stop(t *testing.T) {
	e.once.Do(func() { require.NoError(t, e.Shutdown(context.Background())) })
}

// startExporter builds the exporter through its factory, as the collector does, with fast retries.
func startExporter(t *testing.T, webhookURL string, mutate func(*Config)) *testExporter {
	t.Helper()
	cfg := createDefaultConfig().(*Config)
	cfg.WebhookURL = configopaque.String(webhookURL)
	cfg.InsecureAllowHTTP = true
	cfg.RetryConfig.InitialInterval = 5 * time.Millisecond
	cfg.RetryConfig.MaxInterval = 20 * time.Millisecond
	cfg.RetryConfig.MaxElapsedTime = 2 * time.Second
	if mutate != nil {
		mutate(cfg)
	}
	require.NoError(t, confmap.Validate(cfg))
	core, logs := observer.New(zapcore.DebugLevel)
	set := exportertest.NewNopSettings(metadata.Type)
	set.Logger = zap.New(core)
	exp, err := NewFactory().CreateLogs(context.Background(), set, cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))
	te := &testExporter{Logs: exp, logs: logs}
	t.Cleanup(func() { te.stop(t) })
	return te
}

func noQueue(c *Config) { c.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]() }

type event struct {
	name, tenant, id, actor, impersonator, reason, risk string
	approvalID, payload                                 string
	at                                                  time.Time
}

func logsOf(events ...event) plog.Logs {
	ld := plog.NewLogs()
	sl := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
	sl.Scope().SetName("auditrail")
	for _, ev := range events {
		lr := sl.LogRecords().AppendEmpty()
		lr.SetEventName(ev.name)
		at := ev.at
		if at.IsZero() {
			at = time.Now()
		}
		lr.SetTimestamp(pcommon.NewTimestampFromTime(at))
		attrs := lr.Attributes()
		for k, v := range map[string]string{
			attrTenant: ev.tenant, attrEventID: ev.id, attrActor: ev.actor,
			attrImpersonator: ev.impersonator, attrReason: ev.reason, attrRisk: ev.risk,
			attrApprovalID: ev.approvalID, attrPayload: ev.payload,
		} {
			if v != "" {
				attrs.PutStr(k, v)
			}
		}
	}
	return ld
}

func assertLogsHaveNoSecret(t *testing.T, logs *observer.ObservedLogs) {
	t.Helper()
	for _, entry := range logs.All() {
		assertNoSecret(t, entry.Message+" "+fmt.Sprint(entry.ContextMap()), secrets...)
	}
}

func TestBurstOf500EventsSendsOneCardThenOneExactSummaryWhenTheWindowCloses(t *testing.T) {
	chat := newFakeChat(t)
	exp := startExporter(t, chat.url(), func(c *Config) { c.DedupWindow = 300 * time.Millisecond })

	start := time.Now()
	var wg sync.WaitGroup
	for g := range 5 { // five concurrent callers, 100 events each
		wg.Add(1)
		go func() {
			defer wg.Done()
			var evs []event
			for i := range 100 {
				evs = append(evs, event{name: "prompt.update", tenant: "t1", id: fmt.Sprintf("e-%d-%d", g, i)})
			}
			assert.NoError(t, exp.ConsumeLogs(context.Background(), logsOf(evs...)))
		}()
	}
	wg.Wait()

	posts := chat.waitPosts(t, 2)
	assert.Equal(t, "prompt.update", posts[0].title())
	assert.Equal(t, "499 more prompt.update events for tenant t1 in the last 300ms", posts[1].title())
	assert.Equal(t, posts[0].query.Get("threadKey"), posts[1].query.Get("threadKey"), "the summary replies in the card's thread")
	waited := posts[1].at.Sub(start)
	assert.GreaterOrEqual(t, waited, 300*time.Millisecond, "not before the window closes")
	assert.Less(t, waited, 1300*time.Millisecond, "promptly when it closes")

	time.Sleep(400 * time.Millisecond)
	posts, _ = chat.snapshot()
	assert.Len(t, posts, 2, "a quiet window sends nothing more")
}

func TestRateLimitPerTenantSendsTheFirstCardsThenASummary(t *testing.T) {
	chat := newFakeChat(t)
	exp := startExporter(t, chat.url(), func(c *Config) {
		c.DedupWindow = 0
		c.RateLimit = RateLimitConfig{MaxMessages: 2, Interval: 400 * time.Millisecond}
	})
	var evs []event
	for i := range 5 {
		evs = append(evs, event{name: "admin.impersonation.start", tenant: "t1", id: fmt.Sprintf("a%d", i)})
	}
	evs = append(evs, event{name: "admin.impersonation.start", tenant: "t2", id: "b0"})
	require.NoError(t, exp.ConsumeLogs(context.Background(), logsOf(evs...)))

	posts := chat.waitPosts(t, 4)
	var titles []string
	for _, p := range posts {
		titles = append(titles, p.title()+" @"+p.query.Get("threadKey"))
	}
	sort.Strings(titles)
	assert.Equal(t, []string{
		"3 more admin.impersonation.start events for tenant t1 in the last 400ms @auditrail/admin.impersonation.start/t1",
		"admin.impersonation.start @auditrail/admin.impersonation.start/t1",
		"admin.impersonation.start @auditrail/admin.impersonation.start/t1",
		"admin.impersonation.start @auditrail/admin.impersonation.start/t2",
	}, titles)
}

func TestThreadKeyPerTenantAndEventTypeWithReplyFallback(t *testing.T) {
	chat := newFakeChat(t)
	exp := startExporter(t, chat.url(), nil)
	require.NoError(t, exp.ConsumeLogs(context.Background(), logsOf(
		event{name: "prompt.update", tenant: "t1", id: "1"},
		event{name: "prompt.update", tenant: "t2", id: "2"},
		event{name: "killswitch.disable", tenant: "t1", id: "3"},
	)))
	posts := chat.waitPosts(t, 3)
	var keys []string
	for _, p := range posts {
		keys = append(keys, p.query.Get("threadKey"))
		assert.Equal(t, "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD", p.query.Get("messageReplyOption"))
		assert.Equal(t, testKey, p.query.Get("key"), "the webhook's own query is kept")
		assert.Equal(t, testToken, p.query.Get("token"))
	}
	assert.ElementsMatch(t, []string{
		"auditrail/prompt.update/t1", "auditrail/prompt.update/t2", "auditrail/killswitch.disable/t1",
	}, keys)
}

func TestCardCarriesTheAuditFieldsAndTheTemplatedLink(t *testing.T) {
	chat := newFakeChat(t)
	exp := startExporter(t, chat.url(), func(c *Config) {
		c.LinkTemplate = "https://grafana.test/d/audit?var-tenant={{ .Tenant }}&var-event_id={{ .EventID }}&rule={{ .Rule }}"
		c.LinkText = "Open in Grafana"
	})
	at := time.Date(2026, 11, 26, 16, 30, 0, 0, time.UTC)
	require.NoError(t, exp.ConsumeLogs(context.Background(), logsOf(event{
		name: "killswitch.disable", tenant: "acme&co", id: "0193a0c2-2222-7000-8000-000000000002",
		actor: "bob@acme.test", impersonator: "root@ops.test", reason: "embed broke <pricing>", risk: "critical", at: at,
	})))
	posts := chat.waitPosts(t, 1)
	c := posts[0].msg.CardsV2[0].Card
	assert.Equal(t, "killswitch.disable", c.Header.Title)
	assert.Equal(t, "tenant acme&co · risk critical", c.Header.Subtitle)
	assert.Equal(t, map[string]string{
		"Tenant":       "acme&amp;co",
		"Actor":        "bob@acme.test",
		"Impersonator": "root@ops.test",
		"Reason":       "embed broke &lt;pricing&gt;",
		"Time (UTC)":   "2026-11-26T16:30:00Z",
		"Event ID":     "0193a0c2-2222-7000-8000-000000000002",
		"link":         "https://grafana.test/d/audit?var-tenant=acme%26co&var-event_id=0193a0c2-2222-7000-8000-000000000002&rule=default",
		"link text":    "Open in Grafana",
	}, cardFields(posts[0].msg))
}

// issue 17: the approval.requested card's button opens that request's page, from the rule's own link_template;
// the other rules' cards keep the exporter-wide link, and a record without an approval id gets no button.
func TestApprovalCardLinksToTheRequestsOwnPageWithItsRulesTemplate(t *testing.T) {
	chat := newFakeChat(t)
	noDedup := time.Duration(0)
	exp := startExporter(t, chat.url(), func(c *Config) {
		c.LinkTemplate = "https://grafana.test/d/audit?var-event_id={{ .EventID }}"
		c.LinkText = "Open in Grafana"
		c.Rules = []RuleConfig{{
			Name: "approval", EventNames: []string{"approval.requested"}, DedupWindow: &noDedup,
			LinkTemplate: "https://audit.acme.test/approvals/{{ required .Raw.ApprovalID | pathescape }}",
			LinkText:     "Approve or deny",
		}}
	})
	payload := `{"action":"killswitch.disable","target":"app.ops:disable","requester":"ops@vendor.test",` +
		`"approvers":[],"expires_at":"2026-11-26T17:30:00Z","bound":{"feature":"embed","scope":"*"}}`
	require.NoError(t, exp.ConsumeLogs(context.Background(), logsOf(
		event{name: "approval.requested", tenant: "*", id: "e1", actor: "ops@vendor.test", risk: "low",
			approvalID: "01a24e8b-cbc0-718b-8000-00000000000a", payload: payload},
		event{name: "approval.requested", tenant: "*", id: "e2", actor: "ops@vendor.test", payload: payload},
		event{name: "prompt.update", tenant: "t1", id: "e3", actor: "bob@acme.test"},
	)))
	posts := chat.waitPosts(t, 3)
	byID := map[string]map[string]string{}
	for _, p := range posts {
		byID[p.msg.CardsV2[0].CardID] = cardFields(p.msg)
	}
	card := byID["alert-e1"]
	assert.Equal(t, "https://audit.acme.test/approvals/01a24e8b-cbc0-718b-8000-00000000000a", card["link"])
	assert.Equal(t, "Approve or deny", card["link text"])
	assert.Equal(t, "01a24e8b-cbc0-718b-8000-00000000000a", card["Approval ID"])
	assert.Equal(t, "killswitch.disable", card["Action"])
	assert.Equal(t, "app.ops:disable", card["Target"])
	assert.Equal(t, "ops@vendor.test", card["Requester"])
	assert.Equal(t, "feature: embed<br>scope: *", card["Bound values"])
	assert.Equal(t, "2026-11-26T17:30:00Z", card["Expires"])
	assert.Equal(t, "*", card["Tenant"])
	assert.NotContains(t, byID["alert-e2"], "link", "no approval id: no button rather than a wrong page")
	assert.Equal(t, "ops@vendor.test", byID["alert-e2"]["Requester"])
	assert.Equal(t, "https://grafana.test/d/audit?var-event_id=e3", byID["alert-e3"]["link"])
	assert.Equal(t, "Open in Grafana", byID["alert-e3"]["link text"])
}

func TestRulesShareOneExporterWithTheirOwnLimitsAndShutdownFlushesSummaries(t *testing.T) {
	chat := newFakeChat(t)
	noDedup := time.Duration(0)
	exp := startExporter(t, chat.url(), func(c *Config) {
		c.DedupWindow = time.Hour
		c.Rules = []RuleConfig{{
			Name: "impersonation", EventNames: []string{"admin.impersonation.*"},
			DedupWindow: &noDedup, RateLimit: &RateLimitConfig{},
		}}
	})
	var evs []event
	for i := range 3 {
		evs = append(evs,
			event{name: "admin.impersonation.start", tenant: "t1", id: fmt.Sprintf("i%d", i)},
			event{name: "prompt.update", tenant: "t1", id: fmt.Sprintf("p%d", i)})
	}
	require.NoError(t, exp.ConsumeLogs(context.Background(), logsOf(evs...)))
	chat.waitPosts(t, 4)
	time.Sleep(100 * time.Millisecond)
	posts, _ := chat.snapshot()
	require.Len(t, posts, 4, "3 impersonation cards (no dedup) + 1 prompt.update card (1h window)")

	exp.stop(t)
	posts, _ = chat.snapshot()
	require.Len(t, posts, 5, "shutdown closes the open window and sends its summary")
	assert.Regexp(t, `^2 more prompt.update events for tenant t1 in the last \d+ms$`, posts[4].title())
}

func TestRedeliveredEventIsNotSentOrCountedTwice(t *testing.T) {
	chat := newFakeChat(t)
	exp := startExporter(t, chat.url(), func(c *Config) { c.DedupWindow = 0 })
	ld := logsOf(event{name: "admin.impersonation.start", tenant: "t1", id: "same"})
	require.NoError(t, exp.ConsumeLogs(context.Background(), ld))
	require.NoError(t, exp.ConsumeLogs(context.Background(), ld))
	chat.waitPosts(t, 1)
	exp.stop(t)
	posts, _ := chat.snapshot()
	assert.Len(t, posts, 1)
}

func TestRetryableStatusesAreRetriedUntilDelivered(t *testing.T) {
	chat := newFakeChat(t)
	chat.respond = func(n int, _ *http.Request) (int, string) {
		switch n {
		case 1:
			return http.StatusTooManyRequests, "slow down"
		case 2:
			return http.StatusServiceUnavailable, "unavailable"
		default:
			return http.StatusOK, "{}"
		}
	}
	exp := startExporter(t, chat.url(), nil)
	require.NoError(t, exp.ConsumeLogs(context.Background(), logsOf(event{name: "prompt.update", tenant: "t1", id: "1"})))
	chat.waitPosts(t, 1)
	posts, attempts := chat.snapshot()
	assert.Len(t, posts, 1)
	assert.Equal(t, 3, attempts)
}

func TestRetryResendsOnlyTheMessagesNotYetDelivered(t *testing.T) {
	chat := newFakeChat(t)
	chat.respond = func(n int, _ *http.Request) (int, string) {
		if n == 2 {
			return http.StatusBadGateway, "flaky"
		}
		return http.StatusOK, "{}"
	}
	exp := startExporter(t, chat.url(), noQueue)
	require.NoError(t, exp.ConsumeLogs(context.Background(), logsOf(
		event{name: "prompt.update", tenant: "a", id: "1"},
		event{name: "prompt.update", tenant: "b", id: "2"},
		event{name: "prompt.update", tenant: "c", id: "3"},
	)))
	posts, attempts := chat.snapshot()
	var tenants []string
	for _, p := range posts {
		tenants = append(tenants, p.query.Get("threadKey"))
	}
	assert.Equal(t, []string{"auditrail/prompt.update/a", "auditrail/prompt.update/b", "auditrail/prompt.update/c"}, tenants)
	assert.Equal(t, 4, attempts)
}

func TestClientErrorIsPermanentAndNotRetried(t *testing.T) {
	chat := newFakeChat(t)
	chat.respond = func(int, *http.Request) (int, string) { return http.StatusBadRequest, "Invalid JSON payload" }
	exp := startExporter(t, chat.url(), noQueue)
	err := exp.ConsumeLogs(context.Background(), logsOf(event{name: "prompt.update", tenant: "t1", id: "1"}))
	require.Error(t, err)
	assert.True(t, consumererror.IsPermanent(err))
	assert.Contains(t, err.Error(), "HTTP 400: Invalid JSON payload")
	_, attempts := chat.snapshot()
	assert.Equal(t, 1, attempts)
	assertNoSecret(t, err.Error(), secrets...)
	assertLogsHaveNoSecret(t, exp.logs)
}

func TestWebhookURLIsRedactedFromErrorsAndLogs(t *testing.T) {
	t.Run("response body echoing the URL", func(t *testing.T) {
		chat := newFakeChat(t)
		chat.respond = func(_ int, r *http.Request) (int, string) {
			return http.StatusInternalServerError, "failed for " + r.URL.String() + " key " + r.URL.Query().Get("key")
		}
		exp := startExporter(t, chat.url(), func(c *Config) {
			noQueue(c)
			c.RetryConfig.MaxElapsedTime = 50 * time.Millisecond
		})
		err := exp.ConsumeLogs(context.Background(), logsOf(event{name: "prompt.update", tenant: "t1", id: "1"}))
		require.Error(t, err)
		assert.False(t, consumererror.IsPermanent(err), "5xx is retryable")
		assert.Contains(t, err.Error(), "HTTP 500")
		assert.Contains(t, err.Error(), "[REDACTED]")
		assertNoSecret(t, err.Error(), secrets...)
		assertLogsHaveNoSecret(t, exp.logs)
	})
	t.Run("connection refused", func(t *testing.T) {
		chat := newFakeChat(t)
		webhook := chat.url()
		chat.srv.Close()
		exp := startExporter(t, webhook, func(c *Config) {
			noQueue(c)
			c.RetryConfig.Enabled = false
		})
		err := exp.ConsumeLogs(context.Background(), logsOf(event{name: "prompt.update", tenant: "t1", id: "1"}))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "post to Google Chat webhook")
		assertNoSecret(t, err.Error(), secrets...)
		assertNoSecret(t, fmt.Sprintf("%+v %#v", err, err), secrets...)
		assertLogsHaveNoSecret(t, exp.logs)
	})
}

func TestRetryAfterHeader(t *testing.T) {
	d, ok := retryAfter("3")
	assert.True(t, ok)
	assert.Equal(t, 3*time.Second, d)
	_, ok = retryAfter("")
	assert.False(t, ok)
	_, ok = retryAfter("soon")
	assert.False(t, ok)
}

// flakyNext stands in for exporterhelper: it refuses the first `refuse` calls (a full queue).
type flakyNext struct {
	component.StartFunc
	component.ShutdownFunc
	mu       sync.Mutex
	refuse   int
	accepted []plog.Logs
}

func (f *flakyNext) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

func (f *flakyNext) ConsumeLogs(_ context.Context, ld plog.Logs) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse > 0 {
		f.refuse--
		return exporterhelper.ErrQueueIsFull
	}
	f.accepted = append(f.accepted, ld)
	return nil
}

func newBareExporter(t *testing.T, next *flakyNext, dedup time.Duration) *chatExporter {
	cfg := createDefaultConfig().(*Config)
	cfg.DedupWindow = dedup
	e, err := newChatExporter(cfg, componenttest.NewNopTelemetrySettings())
	require.NoError(t, err)
	e.next = next
	return e
}

func TestCardThatCannotBeQueuedIsRefusedAndItsRedeliveryAccepted(t *testing.T) {
	next := &flakyNext{refuse: 1}
	e := newBareExporter(t, next, 0)
	ld := logsOf(event{name: "killswitch.disable", tenant: "t1", id: "k1"})
	require.ErrorIs(t, e.ConsumeLogs(context.Background(), ld), exporterhelper.ErrQueueIsFull)
	require.NoError(t, e.ConsumeLogs(context.Background(), ld))
	require.Len(t, next.accepted, 1)
	assert.Equal(t, 1, next.accepted[0].LogRecordCount())
}

func TestSummaryThatCannotBeQueuedStaysPendingWithItsExactCount(t *testing.T) {
	next := &flakyNext{}
	e := newBareExporter(t, next, time.Hour)
	var evs []event
	for i := range 4 {
		evs = append(evs, event{name: "prompt.update", tenant: "t1", id: fmt.Sprint(i)})
	}
	require.NoError(t, e.ConsumeLogs(context.Background(), logsOf(evs...)))
	next.refuse = 2
	e.addPending(e.limiter.drain(time.Now()))
	e.flushPending(context.Background())
	e.flushPending(context.Background())
	assert.Len(t, next.accepted, 1, "only the card so far")
	e.flushPending(context.Background())
	require.Len(t, next.accepted, 2)
	got := summariesFromLogs(next.accepted[1])
	require.Len(t, got, 1)
	assert.Equal(t, int64(3), got[0].count)
	assert.Empty(t, e.takePending())
}
