package googlechatexporter // import "github.com/auditrail/auditrail/collector-config/googlechatexporter"

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/url"
	"sort"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"
)

// maxFieldRunes keeps one card field well inside Google Chat's message size limit.
const maxFieldRunes = 1000

// chatMessage is the body of a Google Chat webhook post (only the fields we use).
type chatMessage struct {
	CardsV2 []cardWithID `json:"cardsV2"`
}

type cardWithID struct {
	CardID string `json:"cardId"`
	Card   card   `json:"card"`
}

type card struct {
	Header   cardHeader `json:"header"`
	Sections []section  `json:"sections"`
}

type cardHeader struct {
	Title    string `json:"title"`
	Subtitle string `json:"subtitle,omitempty"`
}

type section struct {
	Widgets []widget `json:"widgets"`
}

type widget struct {
	DecoratedText *decoratedText `json:"decoratedText,omitempty"`
	TextParagraph *textParagraph `json:"textParagraph,omitempty"`
	ButtonList    *buttonList    `json:"buttonList,omitempty"`
}

type decoratedText struct {
	TopLabel string `json:"topLabel"`
	Text     string `json:"text"`
	WrapText bool   `json:"wrapText,omitempty"`
}

type textParagraph struct {
	Text string `json:"text"`
}

type buttonList struct {
	Buttons []button `json:"buttons"`
}

type button struct {
	Text    string  `json:"text"`
	OnClick onClick `json:"onClick"`
}

type onClick struct {
	OpenLink openLink `json:"openLink"`
}

type openLink struct {
	URL string `json:"url"`
}

// alert is the part of an audit LogRecord that a card shows.
type alert struct {
	Rule         string
	EventName    string
	EventID      string
	Tenant       string
	Actor        string
	Impersonator string
	Reason       string
	Risk         string
	Outcome      string
	Time         time.Time
	// Session is audit.impersonation.id: the impersonation session an action belongs to.
	Session string
	// ApprovalID is audit.approval.id: the approval request an approval.* event is about, or the approval an
	// approved action ran with.
	ApprovalID string
	// Payload is audit.payload, decoded (nil when absent or not a JSON object). It is the record's own
	// copy, masked as the store's copy is (audit.yaml redact:, then the pipeline's redaction processor).
	Payload map[string]any
}

// linkData is what a link template sees: fields are URL query-escaped; Raw holds them as they are.
type linkData struct {
	Rule, EventName, EventID, Tenant, Actor, Impersonator, Risk, ApprovalID string
	// Time is the event time in RFC 3339 UTC; TimeUnixMilli suits Grafana's from/to.
	Time          string
	TimeUnixMilli int64
	Raw           alert
}

// Payload is the payload field `key` as card text, URL query-escaped; "" when the record has none. E.g. the
// review cards' `{{ .Payload "month" }}`.
func (d linkData) Payload(key string) string {
	v, ok := d.Raw.Payload[key]
	if !ok {
		return ""
	}
	return url.QueryEscape(valueText(v))
}

var linkFuncs = template.FuncMap{
	"pathescape":  url.PathEscape,
	"queryescape": url.QueryEscape,
	"required":    required,
}

// required fails the link when a value it needs is empty, so the card goes out without a button rather than
// with one that opens the wrong page (e.g. an approval link of a record without audit.approval.id).
func required(v string) (string, error) {
	if v == "" {
		return "", errors.New("a value the link needs is empty")
	}
	return v, nil
}

// parseLinkTemplate parses the template and renders it once on a sample, so a template that
// fails or yields no http(s) URL is rejected when the config is validated, not per alert. A template that
// renders nothing is valid: its cards have no button (e.g. a base URL from an environment variable left unset).
func parseLinkTemplate(text string) (*template.Template, error) {
	tmpl, err := template.New("link").Funcs(linkFuncs).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("link_template: %w", err)
	}
	sample := alert{Rule: "r", EventName: "prompt.update", EventID: "0190a0c2-0000-7000-8000-000000000000",
		Tenant: "t 1", Actor: "a", Risk: "high", ApprovalID: "0190a0c2-0000-7000-8000-000000000001",
		Time: time.Unix(0, 0).UTC()}
	if _, err := renderLink(tmpl, sample); err != nil {
		return nil, err
	}
	return tmpl, nil
}

func renderLink(tmpl *template.Template, a alert) (string, error) {
	q := url.QueryEscape
	data := linkData{
		Rule: q(a.Rule), EventName: q(a.EventName), EventID: q(a.EventID), Tenant: q(a.Tenant),
		Actor: q(a.Actor), Impersonator: q(a.Impersonator), Risk: q(a.Risk), ApprovalID: q(a.ApprovalID),
		Time: a.Time.UTC().Format(time.RFC3339), TimeUnixMilli: a.Time.UnixMilli(), Raw: a,
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return "", fmt.Errorf("link_template: %w", err)
	}
	link := strings.TrimSpace(buf.String())
	if link == "" {
		return "", nil
	}
	u, err := url.Parse(link)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", errors.New("link_template: the rendered link is not an absolute http(s) URL")
	}
	return link, nil
}

// threadKey groups a tenant's messages about one event type in one Chat thread.
func threadKey(tenant, event string) string {
	key := "auditrail/" + event + "/" + tenant
	if len(key) <= 128 {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "auditrail/" + hex.EncodeToString(sum[:16])
}

// alertCard renders one alert; every value from the record is HTML-escaped, since Chat
// interprets HTML in card text and a record could otherwise inject links or mentions.
func alertCard(a alert, link, linkText string) chatMessage {
	field := func(label, value string, wrap bool) widget {
		return widget{DecoratedText: &decoratedText{TopLabel: label, Text: escLines(value), WrapText: wrap}}
	}
	widgets := []widget{
		field("Tenant", orNone(a.Tenant), false),
		field("Actor", orNone(a.Actor), false),
	}
	if a.Impersonator != "" {
		widgets = append(widgets, field("Impersonator", a.Impersonator, false))
	}
	if a.Session != "" {
		widgets = append(widgets, field("Impersonation session", a.Session, false))
	}
	if a.ApprovalID != "" {
		widgets = append(widgets, field("Approval ID", a.ApprovalID, false))
	}
	for _, d := range details(a) {
		widgets = append(widgets, field(d.label, d.text, true))
	}
	if a.Reason != "" || reasonExpected(a.EventName) {
		widgets = append(widgets, field("Reason", orNone(a.Reason), true))
	}
	if a.Outcome != "" {
		widgets = append(widgets, field("Outcome", a.Outcome, false))
	}
	widgets = append(widgets,
		field("Time (UTC)", a.Time.UTC().Format(time.RFC3339), false),
		field("Event ID", orNone(a.EventID), false),
	)
	if link != "" {
		widgets = append(widgets, widget{ButtonList: &buttonList{Buttons: []button{
			{Text: linkText, OnClick: onClick{OpenLink: openLink{URL: link}}},
		}}})
	}
	subtitle := "tenant " + orNone(a.Tenant)
	if a.Risk != "" {
		subtitle += " · risk " + a.Risk
	}
	return chatMessage{CardsV2: []cardWithID{{
		CardID: "alert-" + a.EventID,
		Card: card{
			Header:   cardHeader{Title: truncate(orNone(a.EventName)), Subtitle: truncate(subtitle)},
			Sections: []section{{Widgets: widgets}},
		},
	}}}
}

// detail is one labelled line a card shows from the payload.
type detail struct{ label, text string }

// payloadLabels are the payload keys a responder looks for first (DESIGN.md, "what each must carry"), in
// the order a card shows them. Other keys follow in name order, before and after last.
var payloadLabels = []struct{ key, label string }{
	{"impersonated", "Impersonated user"},
	{"session", "Session"},
	{"impersonator", "Impersonator"},
	{"started_at", "Started"},
	{"ended_at", "Ended"},
	{"feature", "Feature"},
	{"scope", "Scope"},
	{"domain", "Domain"},
	{"run_id", "Run"},
	{"triggered_by", "Triggered by"},
	// approval.* (instrumentation/auditrail/approvals.py): what will run, for whom, bound to which values.
	{"action", "Action"},
	{"target", "Target"},
	{"requester", "Requester"},
	{"bound", "Bound values"},
	{"approvers", "Approved by"},
	{"expires_at", "Expires"},
	// review.due / review.overdue (storage/auditrail_store/reviews/schedule.py): which month, since when late.
	{"month", "Month"},
	{"days_overdue", "Days overdue"},
	{"overdue_after", "Due by"},
	{"signoff_days", "Days to sign off"},
	{"report", "Report"},
}

// maxDetails bounds the payload lines of one card (Google Chat caps a message's size).
const maxDetails = 16

// details are the payload's fields as card lines: the known keys first, then the rest, then the change
// (before -> after, key by key).
func details(a alert) []detail {
	if len(a.Payload) == 0 {
		return nil
	}
	var out []detail
	shown := map[string]bool{"before": true, "after": true}
	for _, kl := range payloadLabels {
		v, ok := a.Payload[kl.key]
		if !ok || (kl.key == "impersonator" && valueText(v) == a.Impersonator) ||
			(kl.key == "session" && valueText(v) == a.Session) {
			shown[kl.key] = true
			continue
		}
		text := valueText(v)
		if m, ok := v.(map[string]any); ok && kl.key == "bound" {
			text = keyLines(m)
		}
		if kl.key == "scope" && text == "*" {
			text = "* (global)"
		}
		out = append(out, detail{kl.label, text})
		shown[kl.key] = true
	}
	var rest []string
	for k := range a.Payload {
		if !shown[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		out = append(out, detail{k, valueText(a.Payload[k])})
	}
	if change := changeLines(a.Payload["before"], a.Payload["after"]); change != "" {
		out = append(out, detail{"Change (before → after)", change})
	}
	if len(out) > maxDetails {
		out = append(out[:maxDetails-1], detail{"More", fmt.Sprintf("%d more payload fields in the audit store", len(out)-maxDetails+1)})
	}
	return out
}

// changeLines writes "key: before → after" for every key of the before and after objects, in name order.
func changeLines(before, after any) string {
	b, bok := before.(map[string]any)
	a, aok := after.(map[string]any)
	if !bok && !aok {
		if before == nil && after == nil {
			return ""
		}
		return valueText(before) + " → " + valueText(after)
	}
	keys := map[string]bool{}
	for k := range b {
		keys[k] = true
	}
	for k := range a {
		keys[k] = true
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	lines := make([]string, 0, len(names))
	for _, k := range names {
		bv, inB := b[k]
		av, inA := a[k]
		lines = append(lines, fmt.Sprintf("%s: %s → %s", k, unsetOr(bv, inB), unsetOr(av, inA)))
	}
	return strings.Join(lines, "\n")
}

// keyLines writes an object as "key: value" lines in name order.
func keyLines(m map[string]any) string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	lines := make([]string, 0, len(names))
	for _, k := range names {
		lines = append(lines, k+": "+valueText(m[k]))
	}
	return strings.Join(lines, "\n")
}

func unsetOr(v any, present bool) string {
	if !present {
		return "(unset)"
	}
	return valueText(v)
}

// valueText writes a payload value: strings as they are, anything else as compact JSON.
func valueText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return "null"
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
}

// reasonExpected says whether DESIGN.md asks this event type for a reason, so that a missing one shows.
func reasonExpected(event string) bool {
	switch {
	case event == "prompt.update", event == "policy.update", event == "admin.impersonation.start",
		event == "billing.quota.override", strings.HasPrefix(event, "killswitch."):
		return true
	}
	return false
}

// summaryText is the sentence a summary carries, e.g.
// "499 more prompt.update events for tenant t1 in the last 60s".
func summaryText(s summary) string {
	noun := "events"
	if s.count == 1 {
		noun = "event"
	}
	return fmt.Sprintf("%d more %s %s for tenant %s in the last %s",
		s.count, orNone(s.event), noun, orNone(s.tenant), spanText(s.end.Sub(s.start)))
}

// spanText writes whole seconds as "60s" (not "1m0s") and anything else to the millisecond.
func spanText(d time.Duration) string {
	if d >= time.Second && d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.Round(time.Millisecond).String()
}

// maxDigestLines bounds the lines of a digest; the rest are counted in one more line.
const maxDigestLines = 20

// digestText is the sentence the space budget's digest carries, e.g.
// "23 more alerts held back by the space budget in the last 60s".
func digestText(s summary) string {
	noun := "alerts"
	if s.count == 1 {
		noun = "alert"
	}
	return fmt.Sprintf("%d more %s held back by the space budget in the last %s", s.count, noun,
		spanText(s.end.Sub(s.start)))
}

// digestCard renders the space budget's digest: one line per rule, tenant and event type it folded.
func digestCard(s summary) chatMessage {
	text := digestText(s)
	lines := make([]string, 0, min(len(s.parts), maxDigestLines)+1)
	for i, p := range s.parts {
		if i == maxDigestLines-1 && len(s.parts) > maxDigestLines {
			var rest int64
			for _, q := range s.parts[i:] {
				rest += q.Count
			}
			lines = append(lines, fmt.Sprintf("%d more in %d other groups", rest, len(s.parts)-i))
			break
		}
		lines = append(lines, fmt.Sprintf("%d × %s · tenant %s (rule %s)", p.Count, orNone(p.Event), orNone(p.Tenant), p.Rule))
	}
	detail := fmt.Sprintf("Between %s and %s UTC the space had its budget of posts; these were folded here. "+
		"Every event is in the audit store.", s.start.UTC().Format(time.RFC3339), s.end.UTC().Format(time.RFC3339))
	return chatMessage{CardsV2: []cardWithID{{
		CardID: "digest",
		Card: card{
			Header: cardHeader{Title: truncate(text)},
			Sections: []section{{Widgets: []widget{
				{TextParagraph: &textParagraph{Text: strings.Join(escAll(lines), "<br>")}},
				{TextParagraph: &textParagraph{Text: esc(detail)}},
			}}},
		},
	}}}
}

// summaryCard renders a summary of held-back records as a card in the same thread.
func summaryCard(s summary) chatMessage {
	text := summaryText(s)
	detail := fmt.Sprintf("Rule %s held these back (dedup window / rate limit) between %s and %s UTC.",
		s.rule, s.start.UTC().Format(time.RFC3339), s.end.UTC().Format(time.RFC3339))
	return chatMessage{CardsV2: []cardWithID{{
		CardID: "summary",
		Card: card{
			Header: cardHeader{Title: truncate(text)},
			Sections: []section{{Widgets: []widget{
				{TextParagraph: &textParagraph{Text: esc(text)}},
				{TextParagraph: &textParagraph{Text: esc(detail)}},
			}}},
		},
	}}}
}

func esc(s string) string { return html.EscapeString(truncate(s)) }

// escAll escapes (and cuts) each line on its own, so a long list keeps its last lines.
func escAll(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = esc(l)
	}
	return out
}

// escLines escapes like esc and keeps line breaks, as Chat's <br> (inserted after escaping, so a record
// cannot add markup of its own).
func escLines(s string) string { return strings.ReplaceAll(esc(s), "\n", "<br>") }

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func truncate(s string) string {
	if utf8.RuneCountInString(s) <= maxFieldRunes {
		return s
	}
	r := []rune(s)
	return string(r[:maxFieldRunes-1]) + "…"
}
