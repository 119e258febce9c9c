// Package awscloudwatchlogsexporter sends log records to AWS CloudWatch Logs with PutLogEvents.
//
// contrib has an exporter of the same type name, but the Go module proxy these machines reach does not
// serve it at the pinned release (v0.161.0), so this is a small, compatible stand-in: the same type name
// and the same keys for what auditrail uses (region, endpoint, log_group_name, log_stream_name, raw_log,
// sending_queue, retry_on_failure, timeout). Swapping back to contrib is a manifest change.
package awscloudwatchlogsexporter // import "github.com/auditrail/auditrail/collector-config/awscloudwatchlogsexporter"

import (
	"errors"
	"net/url"

	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
)

// Config is the exporter's configuration.
type Config struct {
	TimeoutSettings exporterhelper.TimeoutConfig                             `mapstructure:",squash"`
	BackOffConfig   configretry.BackOffConfig                                `mapstructure:"retry_on_failure"`
	QueueSettings   configoptional.Optional[exporterhelper.QueueBatchConfig] `mapstructure:"sending_queue"`

	// Region is the AWS region; credentials come from the standard AWS chain (environment, profile, role).
	Region string `mapstructure:"region"`
	// Endpoint overrides the CloudWatch Logs endpoint (a VPC endpoint, or a local test server).
	Endpoint string `mapstructure:"endpoint"`
	// LogGroupName and LogStreamName receive the events; both are created when missing.
	LogGroupName  string `mapstructure:"log_group_name"`
	LogStreamName string `mapstructure:"log_stream_name"`
	// RawLog sends only the record's body as the message, instead of the JSON document of the record.
	RawLog bool `mapstructure:"raw_log"`
}

var (
	errNoGroup     = errors.New("log_group_name must be set")
	errNoStream    = errors.New("log_stream_name must be set")
	errNoRegion    = errors.New("region must be set (the AWS region of the log group, e.g. us-east-1)")
	errBadEndpoint = errors.New("endpoint must be an absolute http(s) URL")
)

// Validate checks the configuration.
func (c *Config) Validate() error {
	var err error
	if c.LogGroupName == "" {
		err = errors.Join(err, errNoGroup)
	}
	if c.LogStreamName == "" {
		err = errors.Join(err, errNoStream)
	}
	if c.Region == "" {
		err = errors.Join(err, errNoRegion)
	}
	if c.Endpoint != "" {
		u, e := url.Parse(c.Endpoint)
		if e != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			err = errors.Join(err, errBadEndpoint)
		}
	}
	return err
}
