package googlechatexporter

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.uber.org/zap/zaptest"

	"github.com/auditrail/auditrail/collector-config/googlechatexporter/internal/metadata"
)

var fileStorageID = component.MustNewID("file_storage")

// storageHost is a collector host whose only extension is contrib's file_storage.
type storageHost struct {
	extensions map[component.ID]component.Component
}

func (h storageHost) GetExtensions() map[component.ID]component.Component { return h.extensions }

// clock is a settable time source for the exporter.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// persistentRun is one life of the exporter over file_storage in dir: Start, then stop() to shut down.
type persistentRun struct {
	exp  *chatExporter
	stop func()
}

func startPersistent(t *testing.T, dir, webhookURL string, clk *clock, mutate func(*Config)) persistentRun {
	t.Helper()
	factory := filestorage.NewFactory()
	scfg := factory.CreateDefaultConfig().(*filestorage.Config)
	scfg.Directory, scfg.Compaction.Directory = dir, dir
	ext, err := factory.Create(context.Background(), extensiontest.NewNopSettings(factory.Type()), scfg)
	require.NoError(t, err)
	require.NoError(t, ext.Start(context.Background(), componenttest.NewNopHost()))

	cfg := createDefaultConfig().(*Config)
	cfg.WebhookURL = configopaque.String(webhookURL)
	cfg.InsecureAllowHTTP = true
	cfg.QueueConfig.Get().StorageID = &fileStorageID
	cfg.RetryConfig.InitialInterval = 5 * time.Millisecond
	cfg.RetryConfig.MaxElapsedTime = 0
	if mutate != nil {
		mutate(cfg)
	}
	set := exportertest.NewNopSettings(metadata.Type)
	set.ID = component.NewID(metadata.Type) // the same id at each start: it names the storage files
	set.Logger = zaptest.NewLogger(t)
	logs, err := NewFactory().CreateLogs(context.Background(), set, cfg)
	require.NoError(t, err)
	exp := logs.(*chatExporter)
	exp.now = clk.Now
	require.NoError(t, exp.Start(context.Background(), storageHost{map[component.ID]component.Component{fileStorageID: ext}}))
	var once sync.Once
	stop := func() {
		once.Do(func() {
			require.NoError(t, exp.Shutdown(context.Background()))
			require.NoError(t, ext.Shutdown(context.Background()))
		})
	}
	t.Cleanup(stop)
	return persistentRun{exp: exp, stop: stop}
}

// issue 20: a summary could be left unsent when the collector stopped. With a persistent queue the open
// windows are kept across the restart with their exact counts, and their summary goes out afterwards.
func TestOpenWindowSurvivesARestartAndItsExactSummaryGoesOutAfterIt(t *testing.T) {
	chat := newFakeChat(t)
	dir := t.TempDir()
	clk := &clock{now: time.Now()}
	began := clk.Now()
	first := startPersistent(t, dir, chat.url(), clk, func(c *Config) { c.DedupWindow = time.Hour })
	var evs []event
	for i := range 100 {
		evs = append(evs, event{name: "prompt.update", tenant: "t1", id: fmt.Sprint(i)})
	}
	require.NoError(t, first.exp.ConsumeLogs(context.Background(), logsOf(evs...)))
	chat.waitPosts(t, 1)
	first.stop()
	time.Sleep(100 * time.Millisecond)
	posts, _ := chat.snapshot()
	require.Len(t, posts, 1, "a shutdown keeps the window open: no early summary")

	clk.Set(began.Add(time.Hour + time.Second))
	startPersistent(t, dir, chat.url(), clk, func(c *Config) { c.DedupWindow = time.Hour })
	posts = chat.waitPosts(t, 2)
	assert.Equal(t, "99 more prompt.update events for tenant t1 in the last 3600s", posts[1].title())
}

// A post in flight when the collector shuts down is cut off at once and stays queued: the next start sends it.
func TestShutdownCutsOffAPostInFlightAndTheNextStartSendsIt(t *testing.T) {
	hung := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hung) }) }
	t.Cleanup(release)
	slow := newFakeChat(t)
	slow.respond = func(int, *http.Request) (int, string) { <-hung; return http.StatusOK, "{}" }
	dir := t.TempDir()
	clk := &clock{now: time.Now()}
	first := startPersistent(t, dir, slow.url(), clk, func(c *Config) { c.DedupWindow = 0 })
	require.NoError(t, first.exp.ConsumeLogs(context.Background(), logsOf(
		event{name: "killswitch.disable", tenant: "t1", id: "k1"})))
	require.Eventually(t, func() bool { _, n := slow.snapshot(); return n >= 1 }, 5*time.Second, 5*time.Millisecond)
	began := time.Now()
	first.stop()
	assert.Less(t, time.Since(began), 3*time.Second, "the shutdown does not wait for the webhook's timeout")
	release()

	chat := newFakeChat(t)
	startPersistent(t, dir, chat.url(), clk, func(c *Config) { c.DedupWindow = 0 })
	posts := chat.waitPosts(t, 1)
	assert.Equal(t, "killswitch.disable", posts[0].title())
}
