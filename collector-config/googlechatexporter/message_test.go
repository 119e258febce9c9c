package googlechatexporter

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleAlert() alert {
	return alert{
		Rule: "impersonation", EventName: "admin.impersonation.start", EventID: "0193a0c2-1111-7000-8000-000000000001",
		Tenant: "acme & co", Actor: "alice@acme.test", Impersonator: "root@ops.test", Reason: "ticket #42",
		Risk: "high", Outcome: "success", Time: time.Date(2026, 11, 26, 15, 4, 5, 123, time.FixedZone("CET", 3600)),
	}
}

// cardFields flattens a card into label -> text.
func cardFields(m chatMessage) map[string]string {
	out := map[string]string{}
	for _, s := range m.CardsV2[0].Card.Sections {
		for _, w := range s.Widgets {
			if w.DecoratedText != nil {
				out[w.DecoratedText.TopLabel] = w.DecoratedText.Text
			}
			if w.ButtonList != nil {
				out["link"] = w.ButtonList.Buttons[0].OnClick.OpenLink.URL
				out["link text"] = w.ButtonList.Buttons[0].Text
			}
		}
	}
	return out
}

func TestAlertCardShowsEventTenantActorImpersonatorReasonTimeAndLink(t *testing.T) {
	m := alertCard(sampleAlert(), "https://grafana.test/d/x", "Open in Grafana")
	require.Len(t, m.CardsV2, 1)
	c := m.CardsV2[0].Card
	assert.Equal(t, "admin.impersonation.start", c.Header.Title)
	assert.Equal(t, "tenant acme & co · risk high", c.Header.Subtitle)
	assert.Equal(t, map[string]string{
		"Tenant":       "acme &amp; co",
		"Actor":        "alice@acme.test",
		"Impersonator": "root@ops.test",
		"Reason":       "ticket #42",
		"Outcome":      "success",
		"Time (UTC)":   "2026-11-26T14:04:05Z",
		"Event ID":     "0193a0c2-1111-7000-8000-000000000001",
		"link":         "https://grafana.test/d/x",
		"link text":    "Open in Grafana",
	}, cardFields(m))
	body, err := json.Marshal(m)
	require.NoError(t, err)
	assert.Contains(t, string(body), `"cardsV2":[{"cardId":"alert-0193a0c2-1111-7000-8000-000000000001"`)
}

func TestAlertCardEscapesHTMLSoRecordsCannotInjectLinksOrMentions(t *testing.T) {
	a := sampleAlert()
	a.Reason = `<a href="https://evil.test">click</a> <users/all>`
	fields := cardFields(alertCard(a, "", ""))
	assert.Equal(t, "&lt;a href=&#34;https://evil.test&#34;&gt;click&lt;/a&gt; &lt;users/all&gt;", fields["Reason"])
	_, hasLink := fields["link"]
	assert.False(t, hasLink, "no template, no button")
}

func TestAlertCardMarksMissingFieldsAndLeavesOutAbsentImpersonator(t *testing.T) {
	fields := cardFields(alertCard(alert{EventName: "prompt.update", Time: t0}, "", ""))
	assert.Equal(t, "(none)", fields["Tenant"])
	assert.Equal(t, "(none)", fields["Actor"])
	assert.Equal(t, "(none)", fields["Reason"])
	assert.NotContains(t, fields, "Impersonator")
	assert.NotContains(t, fields, "Outcome")
}

func TestLongFieldsAreTruncated(t *testing.T) {
	a := sampleAlert()
	a.Reason = strings.Repeat("x", 5000)
	got := cardFields(alertCard(a, "", ""))["Reason"]
	assert.Equal(t, maxFieldRunes, len([]rune(got)))
	assert.True(t, strings.HasSuffix(got, "…"))
}

func TestLinkTemplateEscapesValuesForTheQuery(t *testing.T) {
	tmpl, err := parseLinkTemplate(`https://grafana.test/d/audit?var-tenant={{ .Tenant }}&var-event_id={{ .EventID }}&from={{ .TimeUnixMilli }}&path={{ pathescape .Raw.Tenant }}&r={{ .Rule }}`)
	require.NoError(t, err)
	link, err := renderLink(tmpl, sampleAlert())
	require.NoError(t, err)
	assert.Equal(t, "https://grafana.test/d/audit?var-tenant=acme+%26+co&var-event_id=0193a0c2-1111-7000-8000-000000000001&from=1795701845000&path=acme%20&%20co&r=impersonation", link)
}

func TestLinkTemplateMustRenderAnAbsoluteURL(t *testing.T) {
	tmpl, err := parseLinkTemplate(`{{ .Raw.Tenant }}`)
	require.Error(t, err, "the sample tenant does not render an absolute URL")
	assert.Nil(t, tmpl)
}

func TestThreadKeyIsPerTenantAndEventType(t *testing.T) {
	assert.Equal(t, "auditrail/prompt.update/t1", threadKey("t1", "prompt.update"))
	assert.NotEqual(t, threadKey("t1", "prompt.update"), threadKey("t2", "prompt.update"))
	assert.NotEqual(t, threadKey("t1", "prompt.update"), threadKey("t1", "policy.update"))
	long := threadKey(strings.Repeat("t", 300), "prompt.update")
	assert.LessOrEqual(t, len(long), 128)
	assert.Equal(t, long, threadKey(strings.Repeat("t", 300), "prompt.update"), "stable")
}

func TestSummaryCardSaysHowManyMoreEvents(t *testing.T) {
	s := summary{rule: "prompts", tenant: "t1", event: "prompt.update", count: 1, start: t0, end: t0.Add(1500 * time.Millisecond)}
	m := summaryCard(s)
	assert.Equal(t, "1 more prompt.update event for tenant t1 in the last 1.5s", m.CardsV2[0].Card.Header.Title)
	assert.Contains(t, m.CardsV2[0].Card.Sections[0].Widgets[1].TextParagraph.Text, "Rule prompts")
}

func TestSpanTextReadsLikeTheWindow(t *testing.T) {
	assert.Equal(t, "60s", spanText(time.Minute))
	assert.Equal(t, "300ms", spanText(300*time.Millisecond))
	assert.Equal(t, "23.4s", spanText(23400*time.Millisecond+200*time.Microsecond))
}

// issue 20: the impersonation card did not say who was impersonated, the kill switch card did not name the
// feature or scope, the impersonation end card showed "Reason: (none)".
func TestCardsCarryThePayloadFieldsThatMatterForTheirEventType(t *testing.T) {
	start := alert{EventName: "admin.impersonation.start", Tenant: "globex", Actor: "root@ops.test", Reason: "ticket 7",
		Time: t0, Payload: map[string]any{"impersonated": "carol@globex.test", "session": "imp-42",
			"started_at": "2026-11-26T15:00:00Z"}}
	fields := cardFields(alertCard(start, "", ""))
	assert.Equal(t, "carol@globex.test", fields["Impersonated user"])
	assert.Equal(t, "imp-42", fields["Session"])
	assert.Equal(t, "2026-11-26T15:00:00Z", fields["Started"])
	assert.Equal(t, "ticket 7", fields["Reason"])

	end := alert{EventName: "admin.impersonation.end", Tenant: "globex", Actor: "root@ops.test", Time: t0,
		Payload: map[string]any{"impersonated": "carol@globex.test", "session": "imp-42", "impersonator": "root@ops.test",
			"started_at": "2026-11-26T15:00:00Z", "ended_at": "2026-11-26T15:20:00Z"}}
	fields = cardFields(alertCard(end, "", ""))
	assert.Equal(t, "carol@globex.test", fields["Impersonated user"])
	assert.Equal(t, "imp-42", fields["Session"])
	assert.Equal(t, "2026-11-26T15:20:00Z", fields["Ended"])
	assert.Equal(t, "root@ops.test", fields["Impersonator"])
	assert.NotContains(t, fields, "Reason", "an end event has no reason to be missing")

	inSession := alert{EventName: "prompt.update", Tenant: "globex", Actor: "carol@globex.test",
		Impersonator: "root@ops.test", Session: "imp-42", Time: t0}
	fields = cardFields(alertCard(inSession, "", ""))
	assert.Equal(t, "root@ops.test", fields["Impersonator"])
	assert.Equal(t, "imp-42", fields["Impersonation session"])

	kill := alert{EventName: "killswitch.disable", Tenant: "*", Actor: "ops@acme.test", Time: t0,
		Payload: map[string]any{"feature": "embed", "scope": "*", "before": map[string]any{"state": "on"},
			"after": map[string]any{"state": "off"}}}
	fields = cardFields(alertCard(kill, "", ""))
	assert.Equal(t, "embed", fields["Feature"])
	assert.Equal(t, "* (global)", fields["Scope"])
	assert.Equal(t, "state: on → off", fields["Change (before → after)"])
	assert.Equal(t, "(none)", fields["Reason"], "a kill switch without a reason shows that it has none")
}

func TestChangeLinesShowEveryKeyBeforeAndAfterEscaped(t *testing.T) {
	policy := alert{EventName: "policy.update", Tenant: "acme", Time: t0, Payload: map[string]any{
		"before": map[string]any{"threshold": 0.8, "mode": "warn", "api_key": "***"},
		"after":  map[string]any{"threshold": 0.5, "mode": "<block>", "extra": []any{1, 2}},
		"policy": "answer-confidence",
	}}
	fields := cardFields(alertCard(policy, "", ""))
	assert.Equal(t, "answer-confidence", fields["policy"])
	assert.Equal(t, "api_key: *** → (unset)<br>extra: (unset) → [1,2]<br>mode: warn → &lt;block&gt;<br>threshold: 0.8 → 0.5",
		fields["Change (before → after)"], "masked values stay masked; record text cannot add markup")

	billing := alert{EventName: "billing.plan.change", Tenant: "acme", Time: t0,
		Payload: map[string]any{"before": map[string]any{"plan": "pro"}, "after": map[string]any{"plan": "enterprise"}}}
	assert.Equal(t, "plan: pro → enterprise", cardFields(alertCard(billing, "", ""))["Change (before → after)"])
}

func TestDigestCardListsWhatTheBudgetFolded(t *testing.T) {
	s := summary{rule: budgetRuleName, count: 7, start: t0, end: t0.Add(time.Minute), parts: []summaryPart{
		{Rule: "critical", Tenant: "t1", Event: "custom.a", Count: 5}, {Rule: "critical", Tenant: "t2", Event: "custom.b", Count: 2}}}
	m := digestCard(s)
	assert.Equal(t, "7 more alerts held back by the space budget in the last 60s", m.CardsV2[0].Card.Header.Title)
	assert.Equal(t, "5 × custom.a · tenant t1 (rule critical)<br>2 × custom.b · tenant t2 (rule critical)",
		m.CardsV2[0].Card.Sections[0].Widgets[0].TextParagraph.Text)
}

func TestLongDigestKeepsItsLastLineWithTheRestCounted(t *testing.T) {
	s := summary{rule: budgetRuleName, start: t0, end: t0.Add(time.Minute)}
	for i := range 25 {
		s.parts = append(s.parts, summaryPart{Rule: "critical", Tenant: "a-tenant-with-a-long-name", Event: fmt.Sprintf("custom.type%02d", i), Count: 1})
		s.count++
	}
	lines := strings.Split(digestCard(s).CardsV2[0].Card.Sections[0].Widgets[0].TextParagraph.Text, "<br>")
	require.Len(t, lines, maxDigestLines)
	assert.Equal(t, "6 more in 6 other groups", lines[maxDigestLines-1])
}

// The review rules' template (rules.yaml) with its base URL set and unset.
const reviewLink = `{{ with "%s" }}{{ . }}/reviews#review-{{ $.Payload "month" }}-{{ pathescape $.Raw.Tenant }}{{ end }}`

func TestReviewOverdueCardSaysWhichMonthHowLateAndLinksToReviewsWhenABaseURLIsSet(t *testing.T) {
	a := alert{Rule: "review", EventName: "review.overdue", EventID: "e1", Tenant: "acme & co", Risk: "medium",
		Time: t0, Payload: map[string]any{"month": "2026-10", "days_overdue": 25.0, "signoff_days": 10.0,
			"overdue_after": "2026-11-12T00:00:00Z", "report": "review-acme-2026-10.pdf"}}
	tmpl, err := parseLinkTemplate(fmt.Sprintf(reviewLink, "https://audit.acme.test"))
	require.NoError(t, err)
	link, err := renderLink(tmpl, a)
	require.NoError(t, err)
	assert.Equal(t, "https://audit.acme.test/reviews#review-2026-10-acme%20&%20co", link)
	fields := cardFields(alertCard(a, link, "Open the review"))
	assert.Equal(t, "2026-10", fields["Month"])
	assert.Equal(t, "25", fields["Days overdue"])
	assert.Equal(t, "2026-11-12T00:00:00Z", fields["Due by"])
	assert.Equal(t, "10", fields["Days to sign off"])
	assert.Equal(t, "acme &amp; co", fields["Tenant"])
	assert.Equal(t, "Open the review", fields["link text"])
}

func TestALinkTemplateThatRendersNothingMeansACardWithoutAButton(t *testing.T) {
	tmpl, err := parseLinkTemplate(fmt.Sprintf(reviewLink, ""))
	require.NoError(t, err, "a base URL left unset is a valid config")
	link, err := renderLink(tmpl, alert{Tenant: "acme", Payload: map[string]any{"month": "2026-10"}})
	require.NoError(t, err)
	assert.Equal(t, "", link)
	assert.NotContains(t, cardFields(alertCard(alert{EventName: "review.overdue", Time: t0}, link, "x")), "link")
}
