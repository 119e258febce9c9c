package googlechatexporter // import "github.com/auditrail/auditrail/collector-config/googlechatexporter"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/xextension/storage"
)

// stateKey is where the limiter's state lives in the exporter's storage client.
const stateKey = "limiter"

// savedState is what survives a restart, SIGKILL included: the open dedup and rate windows with their
// exact counts, the space budget's interval and what it folded, and the summaries not yet queued.
type savedState struct {
	Windows []savedWindow  `json:"windows,omitempty"`
	Rates   []savedRate    `json:"rates,omitempty"`
	Budget  savedBudget    `json:"budget"`
	Pending []savedSummary `json:"pending,omitempty"`
}

type savedWindow struct {
	Rule       string    `json:"rule"`
	Tenant     string    `json:"tenant"`
	Event      string    `json:"event"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	Suppressed int64     `json:"suppressed"`
}

type savedRate struct {
	Rule   string    `json:"rule"`
	Tenant string    `json:"tenant"`
	End    time.Time `json:"end"`
	Sent   int       `json:"sent"`
}

type savedBudget struct {
	Start time.Time     `json:"start"`
	End   time.Time     `json:"end"`
	Posts int           `json:"posts"`
	Held  []summaryPart `json:"held,omitempty"`
}

type savedSummary struct {
	Rule   string        `json:"rule"`
	Tenant string        `json:"tenant"`
	Event  string        `json:"event"`
	Count  int64         `json:"count"`
	Start  time.Time     `json:"start"`
	End    time.Time     `json:"end"`
	Parts  []summaryPart `json:"parts,omitempty"`
}

func saveSummaries(in []summary) []savedSummary {
	out := make([]savedSummary, 0, len(in))
	for _, s := range in {
		out = append(out, savedSummary{Rule: s.rule, Tenant: s.tenant, Event: s.event, Count: s.count,
			Start: s.start, End: s.end, Parts: s.parts})
	}
	return out
}

func loadSummaries(in []savedSummary) []summary {
	out := make([]summary, 0, len(in))
	for _, s := range in {
		out = append(out, summary{rule: s.Rule, tenant: s.Tenant, event: s.Event, count: s.Count,
			start: s.Start, end: s.End, parts: s.Parts})
	}
	return out
}

// snapshot copies the limiter's windows, rates and budget (the seen event ids are not kept: a redelivery
// after a restart may give a second card, never a lost one).
func (l *limiter) snapshot() savedState {
	l.mu.Lock()
	defer l.mu.Unlock()
	var st savedState
	for k, w := range l.windows {
		st.Windows = append(st.Windows, savedWindow{Rule: k.rule, Tenant: k.tenant, Event: k.event,
			Start: w.start, End: w.end, Suppressed: w.suppressed})
	}
	for k, r := range l.rates {
		st.Rates = append(st.Rates, savedRate{Rule: k.rule, Tenant: k.tenant, End: r.end, Sent: r.sent})
	}
	st.Budget = savedBudget{Start: l.budget.start, End: l.budget.end, Posts: l.budget.posts}
	for k, n := range l.budget.held {
		st.Budget.Held = append(st.Budget.Held, summaryPart{Rule: k.rule, Tenant: k.tenant, Event: k.event, Count: n})
	}
	return st
}

// restore puts saved windows, rates and budget back; a window whose rule is gone falls to the default rule.
func (l *limiter) restore(st savedState, rules []*rule) {
	byName := map[string]*rule{}
	for _, r := range rules {
		byName[r.name] = r
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range st.Windows {
		r := byName[w.Rule]
		if r == nil {
			r = rules[len(rules)-1]
		}
		l.windows[alertKey{rule: w.Rule, tenant: w.Tenant, event: w.Event}] =
			&window{rule: r, start: w.Start, end: w.End, suppressed: w.Suppressed}
	}
	for _, r := range st.Rates {
		l.rates[rateKey{rule: r.Rule, tenant: r.Tenant}] = &rateState{end: r.End, sent: r.Sent}
	}
	l.budget.start, l.budget.end, l.budget.posts = st.Budget.Start, st.Budget.End, st.Budget.Posts
	for _, p := range st.Budget.Held {
		l.budget.fold(alertKey{rule: p.Rule, tenant: p.Tenant, event: p.Event}, p.Count)
	}
}

// stateStore keeps savedState in a storage extension's client (file_storage: a bbolt file beside the queue).
type stateStore struct {
	client storage.Client
}

// openStateStore gets a client of the storage extension id for this exporter.
func openStateStore(ctx context.Context, host component.Host, storageID, owner component.ID) (*stateStore, error) {
	ext, ok := host.GetExtensions()[storageID]
	if !ok {
		return nil, fmt.Errorf("googlechat: storage extension %q not found", storageID)
	}
	se, ok := ext.(storage.Extension)
	if !ok {
		return nil, fmt.Errorf("googlechat: extension %q is not a storage extension", storageID)
	}
	client, err := se.GetClient(ctx, component.KindExporter, owner, "state")
	if err != nil {
		return nil, fmt.Errorf("googlechat: open state storage: %w", err)
	}
	return &stateStore{client: client}, nil
}

func (s *stateStore) load(ctx context.Context) (savedState, bool, error) {
	var st savedState
	raw, err := s.client.Get(ctx, stateKey)
	if err != nil || raw == nil {
		return st, false, err
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, false, fmt.Errorf("googlechat: saved state is unreadable: %w", err)
	}
	return st, true, nil
}

func (s *stateStore) save(ctx context.Context, st savedState) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.client.Set(ctx, stateKey, raw)
}

func (s *stateStore) close(ctx context.Context) error {
	if s == nil {
		return nil
	}
	return errors.Join(s.client.Close(ctx))
}
