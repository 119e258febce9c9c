package googlechatexporter

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// issue 20: 30 critical events of 30 types for one tenant gave 30 posts, because limits were per rule,
// tenant and event type and summaries were not limited. The space budget holds whatever the mix.
func TestSpaceBudgetHoldsForThirtyEventTypesAndFoldsTheRestIntoOneDigest(t *testing.T) {
	l := newLimiter().withBudget(5, time.Minute)
	r := &rule{name: "critical", dedupWindow: time.Minute, maxMessages: 10, interval: time.Minute}
	var posts []summary
	cards := 0
	for i := range 30 {
		d, closed := l.admit(r, "t1", fmt.Sprintf("custom.type%02d", i), fmt.Sprint(i), t0.Add(time.Duration(i)*time.Second))
		posts = append(posts, closed...)
		if d == decisionSend {
			cards++
		}
	}
	assert.Equal(t, 5, cards, "the budget's 5 posts of the first minute")
	assert.Empty(t, posts)

	posts = l.due(t0.Add(time.Minute))
	require.Len(t, posts, 1, "one digest, not one summary per type")
	digest := posts[0]
	assert.Equal(t, budgetRuleName, digest.rule)
	assert.Equal(t, int64(25), digest.count, "every event is a card or counted once in the digest")
	assert.Len(t, digest.parts, 25)
	assert.Equal(t, "25 more alerts held back by the space budget in the last 60s", digestText(digest))
	assert.Empty(t, l.due(t0.Add(2*time.Minute+time.Second)), "a quiet interval adds nothing")
}

func TestSpaceBudgetCountsSummariesAndTheDigestItself(t *testing.T) {
	l := newLimiter().withBudget(3, time.Minute)
	r := &rule{name: "prompts", dedupWindow: 10 * time.Second}
	perMinute := map[int]int{}
	var folded, carded, summarized int64
	for s := range 180 { // 4 tenants, one prompt.update each a second, for three minutes
		now := t0.Add(time.Duration(s) * time.Second)
		for tenant := range 4 {
			d, closed := l.admit(r, fmt.Sprintf("t%d", tenant), "prompt.update", "", now)
			for _, c := range closed {
				perMinute[s/60]++
				if c.rule == budgetRuleName {
					folded += c.count
				} else {
					summarized += c.count
				}
			}
			if d == decisionSend {
				perMinute[s/60]++
				carded++
			}
		}
	}
	for _, c := range l.drain(t0.Add(3 * time.Minute)) {
		if c.rule == budgetRuleName {
			folded += c.count
		} else {
			summarized += c.count
		}
	}
	for minute, n := range perMinute {
		assert.LessOrEqual(t, n, 3, "minute %d had %d posts", minute, n)
	}
	assert.Equal(t, int64(720), carded+summarized+folded, "720 events: each a card, in a summary or in a digest")
}

func TestNoSpaceBudgetMeansNoDigest(t *testing.T) {
	l := newLimiter()
	r := &rule{name: "r"}
	for i := range 50 {
		d, closed := l.admit(r, "t1", fmt.Sprint(i), "", t0)
		assert.Equal(t, decisionSend, d)
		assert.Empty(t, closed)
	}
	assert.Empty(t, l.due(t0.Add(time.Hour)))
}
