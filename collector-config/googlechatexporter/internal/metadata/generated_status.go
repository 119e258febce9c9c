// Package metadata holds the component type and stability of the googlechat
// exporter. It mirrors what mdatagen generates from metadata.yaml in contrib;
// keep the two in sync by hand.
package metadata // import "github.com/auditrail/auditrail/collector-config/googlechatexporter/internal/metadata"

import (
	"go.opentelemetry.io/collector/component"
)

var (
	// Type is the component type used in collector configuration.
	Type = component.MustNewType("googlechat")
	// ScopeName is the instrumentation scope of the exporter's own telemetry.
	ScopeName = "github.com/auditrail/auditrail/collector-config/googlechatexporter"
)

const (
	// LogsStability is the stability level of the logs exporter.
	LogsStability = component.StabilityLevelDevelopment
)
