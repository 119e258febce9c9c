package googlechatexporter // import "github.com/auditrail/auditrail/collector-config/googlechatexporter"

import (
	"cmp"
	"slices"
	"strings"
	"text/template"
	"time"
)

// rule is a RuleConfig resolved against the exporter-wide defaults.
type rule struct {
	name        string
	eventNames  []string
	risks       []string
	dedupWindow time.Duration
	maxMessages int
	interval    time.Duration
	// link and linkText replace the exporter-wide link_template and link_text for this rule's cards.
	link     *template.Template
	linkText string
}

// buildRules resolves the configured rules and appends the implicit default rule,
// so every record has a rule and nothing is dropped for matching none.
func buildRules(cfg *Config) ([]*rule, error) {
	rules := make([]*rule, 0, len(cfg.Rules)+1)
	for _, rc := range cfg.Rules {
		r := &rule{
			name:        rc.Name,
			eventNames:  rc.EventNames,
			risks:       rc.Risks,
			dedupWindow: cfg.DedupWindow,
			maxMessages: cfg.RateLimit.MaxMessages,
			interval:    cfg.RateLimit.Interval,
		}
		if rc.DedupWindow != nil {
			r.dedupWindow = *rc.DedupWindow
		}
		if rc.RateLimit != nil {
			r.maxMessages, r.interval = rc.RateLimit.MaxMessages, rc.RateLimit.Interval
		}
		if rc.LinkTemplate != "" {
			tmpl, err := parseLinkTemplate(rc.LinkTemplate)
			if err != nil {
				return nil, err
			}
			r.link, r.linkText = tmpl, cmp.Or(rc.LinkText, cfg.LinkText)
		}
		rules = append(rules, r)
	}
	return append(rules, &rule{
		name:        defaultRuleName,
		dedupWindow: cfg.DedupWindow,
		maxMessages: cfg.RateLimit.MaxMessages,
		interval:    cfg.RateLimit.Interval,
	}), nil
}

// matchRule returns the first rule that matches; the last rule (default) matches everything.
func matchRule(rules []*rule, eventName, risk string) *rule {
	for _, r := range rules {
		if r.matches(eventName, risk) {
			return r
		}
	}
	return rules[len(rules)-1]
}

func (r *rule) matches(eventName, risk string) bool {
	if len(r.risks) > 0 && !slices.Contains(r.risks, risk) {
		return false
	}
	if len(r.eventNames) == 0 {
		return true
	}
	for _, pattern := range r.eventNames {
		if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
			if strings.HasPrefix(eventName, prefix) {
				return true
			}
		} else if pattern == eventName {
			return true
		}
	}
	return false
}

// tickInterval is how often closed windows are looked for: a tenth of the shortest
// window, between 10ms and 1s, so a summary goes out at most that long after its window closes.
func tickInterval(rules []*rule) time.Duration {
	tick := time.Second
	for _, r := range rules {
		for _, d := range []time.Duration{r.dedupWindow, r.interval} {
			if d > 0 && d/10 < tick {
				tick = d / 10
			}
		}
	}
	return max(tick, 10*time.Millisecond)
}
