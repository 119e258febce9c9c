// Package googlecloudexporter is contrib's googlecloud exporter (v0.161.0) for logs, with exporterhelper's
// retry_on_failure added and in-flight writes kept in the persistent queue when the collector shuts down.
//
// Contrib's exporter has no retry_on_failure: a write that fails (Cloud Logging down, a deadline, a
// shutdown in the middle of a call) is removed from its sending queue, so that copy is lost. This wrapper
// runs contrib's exporter synchronously behind its own queue and retry sender: a failed write is retried,
// and a write cut off by a shutdown stays queued and goes out after the restart.
package googlecloudexporter // import "github.com/auditrail/auditrail/collector-config/googlecloudexporter"

import (
	contrib "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/googlecloudexporter"
	"go.opentelemetry.io/collector/config/configretry"
)

// Config is contrib's configuration (project, log, timeout, sending_queue, ...) plus retry_on_failure.
type Config struct {
	contrib.Config `mapstructure:",squash"`
	RetryConfig    configretry.BackOffConfig `mapstructure:"retry_on_failure"`
}
