package googlechatexporter // import "github.com/auditrail/auditrail/collector-config/googlechatexporter"

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

const (
	// seenHorizon is how long an audit.event_id is remembered to drop redelivered copies.
	seenHorizon = 10 * time.Minute
	// seenMax bounds the memory spent on remembered event ids.
	seenMax = 100_000
)

// decision is what the limiter says about one record.
type decision int

const (
	decisionSend       decision = iota // send a card now
	decisionSuppressed                 // counted into a window; reported by a summary
	decisionDuplicate                  // same audit.event_id seen recently; not counted again
)

// alertKey is the unit of deduplication: one rule, one tenant, one event type.
type alertKey struct{ rule, tenant, event string }

// rateKey is the unit of rate limiting: one rule, one tenant.
type rateKey struct{ rule, tenant string }

// window is a quiet period for one alertKey: records arriving in it are counted, not sent.
type window struct {
	rule       *rule
	start, end time.Time
	suppressed int64
}

// rateState counts the cards sent for one rateKey in a fixed interval.
type rateState struct {
	end  time.Time
	sent int
}

// summary reports the records suppressed in one closed window. A digest (the space budget's summary) has
// parts: what it folded, per rule, tenant and event type.
type summary struct {
	rule, tenant, event string
	count               int64
	start, end          time.Time
	parts               []summaryPart
}

// summaryPart is one rule, tenant and event type folded into a digest, with how many posts' worth.
type summaryPart struct {
	Rule   string `json:"rule"`
	Tenant string `json:"tenant"`
	Event  string `json:"event"`
	Count  int64  `json:"count"`
}

// budgetRuleName names the space budget's digests (a reserved rule name).
const budgetRuleName = "space-budget"

// budget caps the posts to the space, cards and summaries of every rule and tenant together, per fixed
// interval. What is over it is folded into one digest, posted as the first message of the next interval.
type budget struct {
	max        int // 0: no budget
	interval   time.Duration
	start, end time.Time // the current interval; zero end: none open
	posts      int
	held       map[alertKey]int64 // folded into the next digest
}

// roll starts a new interval when the current one has ended, and returns the digest of what it folded
// (already counted as the new interval's first post).
func (b *budget) roll(now time.Time) (summary, bool) {
	if b.max <= 0 || (!b.end.IsZero() && now.Before(b.end)) {
		return summary{}, false
	}
	digest, ok := b.digest(b.end)
	if b.end.IsZero() || now.Sub(b.end) >= b.interval {
		b.start = now
	} else {
		b.start = b.end // contiguous intervals while posts keep coming
	}
	b.end, b.posts = b.start.Add(b.interval), 0
	if ok {
		b.posts = 1
	}
	return digest, ok
}

// digest takes the folded counts as one summary ending at end.
func (b *budget) digest(end time.Time) (summary, bool) {
	if len(b.held) == 0 {
		return summary{}, false
	}
	s := summary{rule: budgetRuleName, start: b.start, end: end}
	for k, n := range b.held {
		s.parts = append(s.parts, summaryPart{Rule: k.rule, Tenant: k.tenant, Event: k.event, Count: n})
		s.count += n
	}
	slices.SortFunc(s.parts, func(a, b summaryPart) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.Event, b.Event),
			cmp.Compare(a.Rule, b.Rule))
	})
	b.held = map[alertKey]int64{}
	return s, true
}

// take spends one post of the current interval, if any is left.
func (b *budget) take() bool {
	if b.max <= 0 {
		return true
	}
	if b.posts >= b.max {
		return false
	}
	b.posts++
	return true
}

func (b *budget) fold(key alertKey, n int64) {
	if b.held == nil {
		b.held = map[alertKey]int64{}
	}
	b.held[key] += n
}

// limiter decides per record whether to send a card, and produces exact summaries
// for the records it held back. Time is the exporter's processing time.
type limiter struct {
	mu      sync.Mutex
	windows map[alertKey]*window
	rates   map[rateKey]*rateState
	budget  budget
	seen    seenIDs
}

func newLimiter() *limiter {
	return &limiter{
		windows: map[alertKey]*window{},
		rates:   map[rateKey]*rateState{},
		seen:    seenIDs{at: map[string]time.Time{}},
	}
}

// withBudget sets the space budget: at most max posts per interval (0: none).
func (l *limiter) withBudget(max int, interval time.Duration) *limiter {
	l.budget.max, l.budget.interval = max, interval
	return l
}

// spend passes summaries through the space budget: those it has no post left for are folded into the
// next digest. A digest due now comes first.
func (l *limiter) spend(now time.Time, in []summary) []summary {
	var out []summary
	if d, ok := l.budget.roll(now); ok {
		out = append(out, d)
	}
	for _, s := range in {
		if l.budget.take() {
			out = append(out, s)
		} else {
			l.budget.fold(alertKey{rule: s.rule, tenant: s.tenant, event: s.event}, s.count)
		}
	}
	return out
}

// admit decides about one record and returns the summaries of windows it found closed.
func (l *limiter) admit(r *rule, tenant, event, eventID string, now time.Time) (decision, []summary) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if eventID != "" {
		if l.seen.contains(eventID) {
			return decisionDuplicate, nil
		}
		l.seen.add(eventID, now)
	}
	key := alertKey{rule: r.name, tenant: tenant, event: event}
	var closed []summary
	if w, ok := l.windows[key]; ok {
		closed = l.closeElapsed(key, w, now, closed)
		if w, ok = l.windows[key]; ok {
			w.suppressed++
			return decisionSuppressed, l.spend(now, closed)
		}
	}
	out := l.spend(now, closed)
	var rs *rateState
	if r.maxMessages > 0 {
		rk := rateKey{rule: r.name, tenant: tenant}
		rs = l.rates[rk]
		if rs == nil || !now.Before(rs.end) {
			rs = &rateState{end: now.Add(r.interval)}
			l.rates[rk] = rs
		}
		if rs.sent >= r.maxMessages {
			// Over the limit: hold this event type back until the rate window ends.
			l.windows[key] = &window{rule: r, start: now, end: rs.end, suppressed: 1}
			return decisionSuppressed, out
		}
	}
	if !l.budget.take() {
		// The space has had its posts for this interval: the next digest counts this card.
		l.budget.fold(key, 1)
		return decisionSuppressed, out
	}
	if rs != nil {
		rs.sent++
	}
	if r.dedupWindow > 0 {
		l.windows[key] = &window{rule: r, start: now, end: now.Add(r.dedupWindow)}
	}
	return decisionSend, out
}

// closeElapsed reports every elapsed window of key. A window that held records back is
// followed by a fresh one, so a sustained burst gives one summary per window, not a card.
func (l *limiter) closeElapsed(key alertKey, w *window, now time.Time, out []summary) []summary {
	for !now.Before(w.end) {
		if w.suppressed == 0 || w.rule.dedupWindow <= 0 {
			if w.suppressed > 0 {
				out = append(out, newSummary(key, w, w.end))
			}
			delete(l.windows, key)
			return out
		}
		out = append(out, newSummary(key, w, w.end))
		w.start, w.end, w.suppressed = w.end, w.end.Add(w.rule.dedupWindow), 0
	}
	return out
}

// due returns the summaries of all windows closed by now and drops expired state.
func (l *limiter) due(now time.Time) []summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []summary
	for key, w := range l.windows {
		out = l.closeElapsed(key, w, now, out)
	}
	for key, rs := range l.rates {
		if !now.Before(rs.end) {
			delete(l.rates, key)
		}
	}
	l.seen.expire(now)
	return l.spend(now, sortSummaries(out))
}

// drain closes every window and the budget's interval at now (on a shutdown with nowhere to keep them)
// so no held-back count is lost: what the budget still allows, then one digest of the rest.
func (l *limiter) drain(now time.Time) []summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []summary
	for key, w := range l.windows {
		out = l.closeElapsed(key, w, now, out)
		if w, ok := l.windows[key]; ok && w.suppressed > 0 {
			out = append(out, newSummary(key, w, now))
		}
		delete(l.windows, key)
	}
	out = l.spend(now, sortSummaries(out))
	if d, ok := l.budget.digest(now); ok {
		out = append(out, d)
	}
	return out
}

// forget drops event ids whose cards could not be queued, so a redelivery is not taken for a duplicate.
func (l *limiter) forget(ids []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		delete(l.seen.at, id)
	}
}

func newSummary(key alertKey, w *window, end time.Time) summary {
	return summary{rule: key.rule, tenant: key.tenant, event: key.event, count: w.suppressed, start: w.start, end: end}
}

func sortSummaries(s []summary) []summary {
	slices.SortFunc(s, func(a, b summary) int {
		return cmp.Or(a.end.Compare(b.end), cmp.Compare(a.rule, b.rule), cmp.Compare(a.tenant, b.tenant), cmp.Compare(a.event, b.event))
	})
	return s
}

// seenIDs remembers recent event ids in arrival order, bounded in time and count.
type seenIDs struct {
	at    map[string]time.Time
	order []seenID
}

type seenID struct {
	id string
	at time.Time
}

func (s *seenIDs) contains(id string) bool {
	_, ok := s.at[id]
	return ok
}

func (s *seenIDs) add(id string, now time.Time) {
	s.at[id] = now
	s.order = append(s.order, seenID{id: id, at: now})
	if len(s.order) > seenMax {
		s.pop()
	}
}

func (s *seenIDs) expire(now time.Time) {
	for len(s.order) > 0 && now.Sub(s.order[0].at) >= seenHorizon {
		s.pop()
	}
}

func (s *seenIDs) pop() {
	first := s.order[0]
	s.order = s.order[1:]
	// The id may have been forgotten and seen again since; only drop the entry this slot recorded.
	if at, ok := s.at[first.id]; ok && at.Equal(first.at) {
		delete(s.at, first.id)
	}
}
