package googlechatexporter

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/exporter/exportertest"

	"github.com/auditrail/auditrail/collector-config/googlechatexporter/internal/metadata"
)

func TestFactoryTypeAndDefaultConfig(t *testing.T) {
	f := NewFactory()
	assert.Equal(t, "googlechat", f.Type().String())
	assert.Equal(t, metadata.LogsStability, f.LogsStability())
	cfg := f.CreateDefaultConfig().(*Config)
	require.NoError(t, componenttest.CheckConfigStruct(cfg))
	assert.ErrorContains(t, cfg.Validate(), "webhook_url is required", "a webhook URL has no default")
}

func TestFactoryCreatesLogsOnly(t *testing.T) {
	f := NewFactory()
	cfg := f.CreateDefaultConfig().(*Config)
	cfg.WebhookURL = exampleWebhook
	set := exportertest.NewNopSettings(metadata.Type)

	exp, err := f.CreateLogs(context.Background(), set, cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, exp.Shutdown(context.Background()))

	_, err = f.CreateTraces(context.Background(), set, cfg)
	assert.Error(t, err)
	_, err = f.CreateMetrics(context.Background(), set, cfg)
	assert.Error(t, err)
}

func TestShutdownWithoutStart(t *testing.T) {
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	cfg.WebhookURL = exampleWebhook
	exp, err := NewFactory().CreateLogs(context.Background(), exportertest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	assert.NoError(t, exp.Shutdown(context.Background()))
}
