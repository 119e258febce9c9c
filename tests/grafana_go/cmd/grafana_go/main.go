// Command grafana_go runs queries for benchmarks/grafana.py over HTTP against auditrail's Grafana interface,
// in a process of its own as Grafana is, one client per token, either way:
//
//   - raw: what the data source's client sends (a POST of the SQL, default_format=Native, the database, Basic
//     auth with the token as the password, keep-alive), the whole Native answer read, nothing decoded: the
//     interface's own cost with next to none of a client's (the engine's way in the benchmark decodes nothing
//     either);
//   - clickhouse-go: the data source's client library in HTTP mode, every row read and scanned into its column's
//     Go type as the data source does (grafanago.Scan, as the test reads them): what a refresh costs Grafana's
//     side too.
//
// Usage: grafana_go raw|clickhouse-go HOST:PORT TOKEN... ; then one request a line on stdin, "<token index>\t<SQL
// as a JSON string>", answered by one line on stdout: "ok\t<rows, or bytes for raw>" or "error\t<message as a
// JSON string>".
package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	grafanago "auditrail/tests/grafana_go"
)

func main() {
	if len(os.Args) < 4 || (os.Args[1] != "raw" && os.Args[1] != "clickhouse-go") {
		fmt.Fprintln(os.Stderr, "usage: grafana_go raw|clickhouse-go HOST:PORT TOKEN...")
		os.Exit(2)
	}
	var clients []func(string) (int, error)
	for _, token := range os.Args[3:] {
		if os.Args[1] == "raw" {
			clients = append(clients, rawClient(os.Args[2], token))
			continue
		}
		db := grafanago.Open(os.Args[2], token, 300*time.Second)
		defer db.Close()
		clients = append(clients, func(query string) (int, error) {
			return grafanago.Scan(context.Background(), db, query, func([]*sql.ColumnType) {}, func([]any) {})
		})
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	out := bufio.NewWriter(os.Stdout)
	for in.Scan() {
		index, text, _ := strings.Cut(in.Text(), "\t")
		var query string
		i, err := strconv.Atoi(index)
		if err == nil && (i < 0 || i >= len(clients)) {
			err = fmt.Errorf("no token %d", i)
		}
		if err == nil {
			err = json.Unmarshal([]byte(text), &query)
		}
		count := 0
		if err == nil {
			count, err = clients[i](query)
		}
		if err != nil {
			message, _ := json.Marshal(err.Error())
			fmt.Fprintf(out, "error\t%s\n", message)
		} else {
			fmt.Fprintf(out, "ok\t%d\n", count)
		}
		out.Flush()
	}
}

// rawClient POSTs a query as clickhouse-go's HTTP transport does and reads the whole answer: its size.
func rawClient(address, token string) func(string) (int, error) {
	client := &http.Client{Timeout: 300 * time.Second}
	endpoint := "http://" + address + "/?" + url.Values{"default_format": {"Native"}, "database": {"auditrail"}}.Encode()
	return func(query string) (int, error) {
		request, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(query))
		if err != nil {
			return 0, err
		}
		request.SetBasicAuth("grafana", token)
		response, err := client.Do(request)
		if err != nil {
			return 0, err
		}
		defer response.Body.Close()
		body, err := io.ReadAll(response.Body)
		if err != nil {
			return 0, err
		}
		if response.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("HTTP %d: %s", response.StatusCode, body)
		}
		return len(body), nil
	}
}
