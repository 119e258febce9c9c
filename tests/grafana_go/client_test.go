// Package grafanago runs SQL through clickhouse-go in HTTP mode, the client library of Grafana's ClickHouse
// data source, against auditrail's read-only Grafana interface (tests/test_grafana_http.py drives it).
//
// Input (env): AUDITRAIL_GRAFANA_ADDR (host:port), AUDITRAIL_GRAFANA_TOKEN (the password),
// AUDITRAIL_GRAFANA_CASES (a JSON file: a list of SQL strings), AUDITRAIL_GRAFANA_OUT (where the results go:
// a JSON list of {"sql", "columns", "rows" (each value fmt.Sprint'ed), "error"}).
package grafanago

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"
)

type result struct {
	SQL     string     `json:"sql"`
	Columns []string   `json:"columns"`
	Rows    [][]string `json:"rows"`
	Error   string     `json:"error"`
}

func TestQueriesThroughTheDataSourceClient(t *testing.T) {
	addr := os.Getenv("AUDITRAIL_GRAFANA_ADDR")
	if addr == "" {
		t.Skip("AUDITRAIL_GRAFANA_ADDR is not set: run through tests/test_grafana_http.py")
	}
	raw, err := os.ReadFile(os.Getenv("AUDITRAIL_GRAFANA_CASES"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	db := Open(addr, os.Getenv("AUDITRAIL_GRAFANA_TOKEN"), 60*time.Second)
	defer db.Close()
	ctx := context.Background()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	var out []result
	for _, query := range cases {
		out = append(out, run(ctx, db, query))
	}
	data, _ := json.MarshalIndent(out, "", " ")
	if err := os.WriteFile(os.Getenv("AUDITRAIL_GRAFANA_OUT"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func run(ctx context.Context, db *sql.DB, query string) result {
	res := result{SQL: query, Rows: [][]string{}}
	_, err := Scan(ctx, db, query, func(types []*sql.ColumnType) {
		for _, ct := range types {
			res.Columns = append(res.Columns, ct.Name())
		}
	}, func(values []any) {
		row := make([]string, len(values))
		for i, v := range values {
			row[i] = text(reflect.ValueOf(v).Elem())
		}
		res.Rows = append(res.Rows, row)
	})
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

// text prints a scanned value, through any pointers (nullable and some LowCardinality columns scan into them).
func text(v reflect.Value) string {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return "NULL"
		}
		v = v.Elem()
	}
	return fmt.Sprint(v.Interface())
}
