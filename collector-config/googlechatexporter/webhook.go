package googlechatexporter // import "github.com/auditrail/auditrail/collector-config/googlechatexporter"

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
)

// maxErrorBody is how much of a rejected response's body goes into the error.
const maxErrorBody = 512

// webhook posts messages to one Google Chat incoming webhook.
type webhook struct {
	client *http.Client
	base   *url.URL
	redact *redactor
}

func newWebhook(client *http.Client, rawURL string) (*webhook, error) {
	base, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("webhook_url is not a valid URL")
	}
	return &webhook{client: client, base: base, redact: newRedactor(base)}, nil
}

// post sends one message into the thread named by key. 429, 408 and 5xx are retryable
// (honouring Retry-After); other 4xx are permanent. Errors never contain the URL.
func (w *webhook) post(ctx context.Context, msg chatMessage, key string) error {
	body, err := json.Marshal(msg)
	if err != nil {
		return consumererror.NewPermanent(fmt.Errorf("encode Google Chat message: %w", err))
	}
	u := *w.base
	q := u.Query()
	q.Set("threadKey", key)
	q.Set("messageReplyOption", "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD")
	u.RawQuery = q.Encode()
	// The redactor knows the path and every query value, so it also covers this URL.
	target := u.String()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return consumererror.NewPermanent(w.redact.wrap("build Google Chat webhook request", err))
	}
	req.Header.Set("Content-Type", "application/json; charset=UTF-8")
	resp, err := w.client.Do(req)
	if err != nil {
		// *url.Error quotes the full request URL, key and token included: keep only its cause.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return w.redact.wrap("post to Google Chat webhook", err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, resp.Body) // drain so the connection is reused

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	statusErr := &redactedError{msg: w.redact.scrub(fmt.Sprintf("Google Chat webhook answered HTTP %d: %s",
		resp.StatusCode, strings.TrimSpace(string(snippet))))}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		if delay, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
			return exporterhelper.NewThrottleRetry(statusErr, delay)
		}
		return statusErr
	default:
		return consumererror.NewPermanent(statusErr)
	}
}

// retryAfter reads a Retry-After header in seconds or as an HTTP date.
func retryAfter(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

// redactor removes the webhook URL and its secret parts from any text.
type redactor struct {
	secrets []string
}

func newRedactor(base *url.URL) *redactor {
	r := &redactor{}
	r.add(base.String())
	r.add(base.RawQuery)
	r.add(base.Path)
	for _, values := range base.Query() {
		for _, v := range values {
			r.add(v)
			r.add(url.QueryEscape(v))
		}
	}
	return r
}

// add registers one more secret string (only while building: scrub is called concurrently);
// short ones are skipped so ordinary words survive.
func (r *redactor) add(s string) {
	if len(s) < 8 {
		return
	}
	for _, have := range r.secrets {
		if have == s {
			return
		}
	}
	// Longest first, so a full URL is replaced before the parts inside it.
	r.secrets = append(r.secrets, s)
	for i := len(r.secrets) - 1; i > 0 && len(r.secrets[i]) > len(r.secrets[i-1]); i-- {
		r.secrets[i], r.secrets[i-1] = r.secrets[i-1], r.secrets[i]
	}
}

func (r *redactor) scrub(s string) string {
	for _, secret := range r.secrets {
		s = strings.ReplaceAll(s, secret, "[REDACTED]")
	}
	return s
}

// wrap makes an error whose text is scrubbed; it unwraps to cause only when the
// cause's own text holds no secret, so neither Error() nor errors.Unwrap leaks one.
func (r *redactor) wrap(what string, cause error) error {
	text := cause.Error()
	clean := r.scrub(text)
	e := &redactedError{msg: what + ": " + clean}
	if clean == text {
		e.cause = cause
	}
	return e
}

// redactedError carries a message that has been scrubbed of the webhook URL.
type redactedError struct {
	msg   string
	cause error
}

func (e *redactedError) Error() string { return e.msg }

func (e *redactedError) Unwrap() error { return e.cause }
