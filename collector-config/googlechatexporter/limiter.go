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

// summary reports the records suppressed in one closed window.
type summary struct {
	rule, tenant, event string
	count               int64
	start, end          time.Time
}

// limiter decides per record whether to send a card, and produces exact summaries
// for the records it held back. Time is the exporter's processing time.
type limiter struct {
	mu      sync.Mutex
	windows map[alertKey]*window
	rates   map[rateKey]*rateState
	seen    seenIDs
}

func newLimiter() *limiter {
	return &limiter{
		windows: map[alertKey]*window{},
		rates:   map[rateKey]*rateState{},
		seen:    seenIDs{at: map[string]time.Time{}},
	}
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
	var out []summary
	if w, ok := l.windows[key]; ok {
		out = l.closeElapsed(key, w, now, out)
		if w, ok = l.windows[key]; ok {
			w.suppressed++
			return decisionSuppressed, out
		}
	}
	if r.maxMessages > 0 {
		rk := rateKey{rule: r.name, tenant: tenant}
		rs := l.rates[rk]
		if rs == nil || !now.Before(rs.end) {
			rs = &rateState{end: now.Add(r.interval)}
			l.rates[rk] = rs
		}
		if rs.sent >= r.maxMessages {
			// Over the limit: hold this event type back until the rate window ends.
			l.windows[key] = &window{rule: r, start: now, end: rs.end, suppressed: 1}
			return decisionSuppressed, out
		}
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
	return sortSummaries(out)
}

// drain closes every window at now (on shutdown) so no held-back count is lost.
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
	return sortSummaries(out)
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
