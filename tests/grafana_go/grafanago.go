package grafanago

import (
	"context"
	"database/sql"
	"reflect"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Open opens what the data source opens in HTTP mode (pkg/plugin/driver.go: clickhouse.OpenDB with Protocol
// HTTP), the token as the password.
func Open(addr, token string, readTimeout time.Duration) *sql.DB {
	return clickhouse.OpenDB(&clickhouse.Options{
		Addr:        []string{addr},
		Protocol:    clickhouse.HTTP,
		Auth:        clickhouse.Auth{Username: "grafana", Password: token},
		DialTimeout: 10 * time.Second,
		ReadTimeout: readTimeout,
	})
}

// Scan reads every row of query, each value scanned into its column's Go type as the data source does, and
// hands the columns (once, first) and each row's values (pointers, reused for the next row) to the callbacks;
// it returns the rows read.
func Scan(ctx context.Context, db *sql.DB, query string, columns func([]*sql.ColumnType), row func([]any)) (int, error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		return 0, err
	}
	columns(types)
	values := make([]any, len(types))
	count := 0
	for rows.Next() {
		for i, ct := range types {
			values[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(values...); err != nil {
			return count, err
		}
		row(values)
		count++
	}
	return count, rows.Err()
}
