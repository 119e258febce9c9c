package googlechatexporter

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC)

func TestBurstOf500GivesOneCardAndAnExactSummaryWhenTheWindowCloses(t *testing.T) {
	l := newLimiter()
	r := &rule{name: "prompts", dedupWindow: time.Minute, maxMessages: 10, interval: time.Minute}
	sent := 0
	for i := range 500 {
		d, closed := l.admit(r, "t1", "prompt.update", fmt.Sprintf("id-%d", i), t0.Add(time.Duration(i)*10*time.Millisecond))
		assert.Empty(t, closed)
		if d == decisionSend {
			sent++
		}
	}
	assert.Equal(t, 1, sent)
	assert.Empty(t, l.due(t0.Add(59*time.Second)), "no summary before the window closes")
	got := l.due(t0.Add(time.Minute))
	require.Len(t, got, 1)
	assert.Equal(t, summary{rule: "prompts", tenant: "t1", event: "prompt.update", count: 499, start: t0, end: t0.Add(time.Minute)}, got[0])
	assert.Equal(t, "499 more prompt.update events for tenant t1 in the last 60s", summaryText(got[0]))
	assert.Empty(t, l.due(t0.Add(2*time.Minute)), "a quiet window ends without a summary")

	d, _ := l.admit(r, "t1", "prompt.update", "id-new", t0.Add(3*time.Minute))
	assert.Equal(t, decisionSend, d, "after a quiet window the next event is a card again")
}

func TestSustainedFloodGivesOneSummaryPerWindowAndNoNewCard(t *testing.T) {
	l := newLimiter()
	r := &rule{name: "r", dedupWindow: time.Minute}
	var sums []summary
	sends := 0
	for s := range 180 { // one event a second for three minutes
		d, closed := l.admit(r, "t1", "prompt.update", "", t0.Add(time.Duration(s)*time.Second))
		sums = append(sums, closed...)
		if d == decisionSend {
			sends++
		}
	}
	sums = append(sums, l.due(t0.Add(3*time.Minute))...)
	assert.Equal(t, 1, sends)
	require.Len(t, sums, 3)
	total := int64(0)
	for i, s := range sums {
		assert.Equal(t, t0.Add(time.Duration(i)*time.Minute), s.start)
		total += s.count
	}
	assert.Equal(t, int64(179), total, "every held-back event is counted once")
}

func TestRateLimitPerRuleAndTenantHoldsBackTheRestUntilTheIntervalEnds(t *testing.T) {
	l := newLimiter()
	r := &rule{name: "imp", dedupWindow: 0, maxMessages: 2, interval: time.Minute}
	var decisions []decision
	for i := range 5 {
		d, _ := l.admit(r, "t1", "admin.impersonation.start", "", t0.Add(time.Duration(i)*time.Second))
		decisions = append(decisions, d)
	}
	other, _ := l.admit(r, "t2", "admin.impersonation.start", "", t0.Add(5*time.Second))
	assert.Equal(t, []decision{decisionSend, decisionSend, decisionSuppressed, decisionSuppressed, decisionSuppressed}, decisions)
	assert.Equal(t, decisionSend, other, "another tenant has its own limit")

	assert.Empty(t, l.due(t0.Add(59*time.Second)))
	got := l.due(t0.Add(time.Minute))
	require.Len(t, got, 1)
	assert.Equal(t, int64(3), got[0].count)
	assert.Equal(t, t0.Add(2*time.Second), got[0].start)

	d, _ := l.admit(r, "t1", "admin.impersonation.start", "", t0.Add(61*time.Second))
	assert.Equal(t, decisionSend, d, "a new interval sends again")
}

func TestRateLimitCountsEveryEventTypeOfATenant(t *testing.T) {
	l := newLimiter()
	r := &rule{name: "r", dedupWindow: time.Hour, maxMessages: 2, interval: time.Minute}
	events := []string{"killswitch.disable", "policy.update", "prompt.update", "prompt.update"}
	var decisions []decision
	for _, ev := range events {
		d, _ := l.admit(r, "t1", ev, "", t0)
		decisions = append(decisions, d)
	}
	assert.Equal(t, []decision{decisionSend, decisionSend, decisionSuppressed, decisionSuppressed}, decisions)
	got := l.due(t0.Add(time.Minute))
	require.Len(t, got, 1)
	assert.Equal(t, "prompt.update", got[0].event)
	assert.Equal(t, int64(2), got[0].count)
}

func TestDuplicateEventIDIsIgnoredUntilForgotten(t *testing.T) {
	l := newLimiter()
	r := &rule{name: "r"}
	d1, _ := l.admit(r, "t1", "killswitch.disable", "e1", t0)
	d2, _ := l.admit(r, "t1", "killswitch.disable", "e1", t0.Add(time.Second))
	assert.Equal(t, decisionSend, d1)
	assert.Equal(t, decisionDuplicate, d2)

	l.forget([]string{"e1"})
	d3, _ := l.admit(r, "t1", "killswitch.disable", "e1", t0.Add(2*time.Second))
	assert.Equal(t, decisionSend, d3, "a redelivery after a failed enqueue is not a duplicate")

	l.due(t0.Add(seenHorizon + 3*time.Second))
	d4, _ := l.admit(r, "t1", "killswitch.disable", "e1", t0.Add(seenHorizon+3*time.Second))
	assert.Equal(t, decisionSend, d4, "ids are remembered only for seenHorizon")
}

func TestDrainReportsOpenWindowsUpToNow(t *testing.T) {
	l := newLimiter()
	r := &rule{name: "r", dedupWindow: time.Hour}
	for i := range 3 {
		l.admit(r, "t1", "prompt.update", "", t0.Add(time.Duration(i)*time.Second))
	}
	l.admit(r, "t2", "prompt.update", "", t0) // a card with nothing held back: no summary
	got := l.drain(t0.Add(10 * time.Second))
	require.Len(t, got, 1)
	assert.Equal(t, summary{rule: "r", tenant: "t1", event: "prompt.update", count: 2, start: t0, end: t0.Add(10 * time.Second)}, got[0])
	assert.Empty(t, l.windows)
}

func TestRuleMatchingByEventNameAndRisk(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Rules = []RuleConfig{
		{Name: "imp", EventNames: []string{"admin.impersonation.*"}},
		{Name: "kill", EventNames: []string{"killswitch.disable"}, Risks: []string{"critical"}},
		{Name: "risky", Risks: []string{"high", "critical"}},
	}
	rules, err := buildRules(cfg)
	require.NoError(t, err)
	for _, tt := range []struct{ event, risk, want string }{
		{"admin.impersonation.start", "", "imp"},
		{"admin.impersonation.end", "high", "imp"},
		{"killswitch.disable", "critical", "kill"},
		{"killswitch.disable", "high", "risky"},
		{"prompt.update", "low", defaultRuleName},
		{"prompt.update", "", defaultRuleName},
	} {
		assert.Equal(t, tt.want, matchRule(rules, tt.event, tt.risk).name, "%s/%s", tt.event, tt.risk)
	}
}

func TestTickIsATenthOfTheShortestWindow(t *testing.T) {
	assert.Equal(t, time.Second, tickInterval([]*rule{{dedupWindow: time.Minute}}))
	assert.Equal(t, 30*time.Millisecond, tickInterval([]*rule{{dedupWindow: time.Minute}, {interval: 300 * time.Millisecond}}))
	assert.Equal(t, 10*time.Millisecond, tickInterval([]*rule{{dedupWindow: time.Millisecond}}))
}
