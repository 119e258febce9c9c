// Package googlechatexporter sends audit LogRecords to a Google Chat space
// through an incoming webhook: one cardsV2 message per alert, threaded per
// tenant and event type, with a dedup window and a rate limit per rule and
// tenant that fold bursts into exact summary messages.
package googlechatexporter // import "github.com/auditrail/auditrail/collector-config/googlechatexporter"
