package clickhouse

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// ttlColumn is the time column each table's retention counts from.
var ttlColumn = map[string]string{
	TableFrames:          "ts",
	TableCommands:        "started_at",
	TableSessions:        "started_at",
	TableIntegrityAlerts: "started_at",
}

var ttlTables = []string{TableFrames, TableCommands, TableSessions, TableIntegrityAlerts}

func (c *Config) retentionDays(table string) int {
	switch table {
	case TableFrames:
		return c.Retention.FramesDays
	case TableCommands:
		return c.Retention.CommandsDays
	case TableSessions:
		return c.Retention.SessionsDays
	case TableIntegrityAlerts:
		return c.Retention.IntegrityAlertsDays
	}
	return 0
}

// TTL returns the TTL clause body Migrate sets on table ("" for none): rows are
// deleted after the retention, and with a storage policy their parts move to the cold
// volume first.
func (c *Config) TTL(table string) string {
	at := "toDateTime(" + ttlColumn[table] + ")"
	var parts []string
	if c.Storage.Policy != "" && c.Storage.ColdAfterDays > 0 {
		parts = append(parts, fmt.Sprintf("%s + toIntervalDay(%d) TO VOLUME '%s'", at, c.Storage.ColdAfterDays, c.Storage.ColdVolume))
	}
	if d := c.retentionDays(table); d > 0 {
		parts = append(parts, fmt.Sprintf("%s + toIntervalDay(%d) DELETE", at, d))
	}
	return strings.Join(parts, ", ")
}

// applyTableSettings brings each table's storage policy and TTL to the configured
// ones, altering only what changed since the last run.
func (s *store) applyTableSettings(ctx context.Context) error {
	if s.cfg.Schema == SchemaLegacy {
		return nil
	}
	for _, t := range ttlTables {
		if err := s.applyPolicy(ctx, t); err != nil {
			return err
		}
		if err := s.applyTTL(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

func (s *store) applyPolicy(ctx context.Context, table string) error {
	want := s.cfg.Storage.Policy
	if want == "" {
		return nil
	}
	have, err := s.queryString(ctx,
		"SELECT storage_policy FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
		Params{"t": table}, "")
	if err != nil {
		return fmt.Errorf("clickhouse: read storage policy of %s: %w", table, err)
	}
	if have == want {
		return nil
	}
	// Allowed when the new policy keeps the old one's disks, as deploy/clickhouse's
	// "tiered" policy does with the default disk as its hot volume.
	if err := s.conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s MODIFY SETTING storage_policy = '%s'", table, want), nil); err != nil {
		return fmt.Errorf("clickhouse: set storage policy %s on %s: %w", want, table, err)
	}
	slog.Info("clickhouse storage policy set", "table", table, "policy", want, "was", have)
	return nil
}

func (s *store) applyTTL(ctx context.Context, table string) error {
	want := s.cfg.TTL(table)
	have, err := s.queryString(ctx, "SELECT ttl FROM table_settings FINAL WHERE table = {t:String}", Params{"t": table}, "")
	if err != nil {
		return fmt.Errorf("clickhouse: read applied TTL of %s: %w", table, err)
	}
	if have == want {
		return nil
	}
	stmt := "ALTER TABLE " + table + " REMOVE TTL"
	if want != "" {
		stmt = "ALTER TABLE " + table + " MODIFY TTL " + want
	}
	if err := s.conn.Exec(ctx, stmt, nil); err != nil && !(want == "" && strings.Contains(err.Error(), "doesn't have TTL")) {
		return fmt.Errorf("clickhouse: %s: %w", stmt, err)
	}
	if err := s.conn.Exec(ctx, "INSERT INTO table_settings (table, ttl) VALUES ({t:String}, {ttl:String})",
		Params{"t": table, "ttl": want}); err != nil {
		return fmt.Errorf("clickhouse: record TTL of %s: %w", table, err)
	}
	slog.Info("clickhouse TTL set", "table", table, "ttl", want, "was", have)
	return nil
}
