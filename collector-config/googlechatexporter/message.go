package googlechatexporter // import "github.com/auditrail/auditrail/collector-config/googlechatexporter"

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"net/url"
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
}

// linkData is what a link template sees: fields are URL query-escaped; Raw holds them as they are.
type linkData struct {
	Rule, EventName, EventID, Tenant, Actor, Impersonator, Risk string
	// Time is the event time in RFC 3339 UTC; TimeUnixMilli suits Grafana's from/to.
	Time          string
	TimeUnixMilli int64
	Raw           alert
}

var linkFuncs = template.FuncMap{
	"pathescape":  url.PathEscape,
	"queryescape": url.QueryEscape,
}

// parseLinkTemplate parses the template and renders it once on a sample, so a template that
// fails or yields no http(s) URL is rejected when the config is validated, not per alert.
func parseLinkTemplate(text string) (*template.Template, error) {
	tmpl, err := template.New("link").Funcs(linkFuncs).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("link_template: %w", err)
	}
	sample := alert{Rule: "r", EventName: "prompt.update", EventID: "0190a0c2-0000-7000-8000-000000000000",
		Tenant: "t 1", Actor: "a", Risk: "high", Time: time.Unix(0, 0).UTC()}
	if _, err := renderLink(tmpl, sample); err != nil {
		return nil, err
	}
	return tmpl, nil
}

func renderLink(tmpl *template.Template, a alert) (string, error) {
	q := url.QueryEscape
	data := linkData{
		Rule: q(a.Rule), EventName: q(a.EventName), EventID: q(a.EventID), Tenant: q(a.Tenant),
		Actor: q(a.Actor), Impersonator: q(a.Impersonator), Risk: q(a.Risk),
		Time: a.Time.UTC().Format(time.RFC3339), TimeUnixMilli: a.Time.UnixMilli(), Raw: a,
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return "", fmt.Errorf("link_template: %w", err)
	}
	link := strings.TrimSpace(buf.String())
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
		return widget{DecoratedText: &decoratedText{TopLabel: label, Text: esc(value), WrapText: wrap}}
	}
	widgets := []widget{
		field("Tenant", orNone(a.Tenant), false),
		field("Actor", orNone(a.Actor), false),
	}
	if a.Impersonator != "" {
		widgets = append(widgets, field("Impersonator", a.Impersonator, false))
	}
	widgets = append(widgets, field("Reason", orNone(a.Reason), true))
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
