package module

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hookgate/hookgate/module/signing"
)

// `caddy webhooks …`: the admin API (admin.go) from the command line.
//
//	caddy webhooks stats
//	caddy webhooks events <event-id>
//	caddy webhooks deliveries [--route R] [--status S] [--type T] [--since T] [--until T] [--limit N] [--cursor C]
//	caddy webhooks retry <delivery-id>
//	caddy webhooks replay <route> [--status dead|delivered] [--since T] [--until T] [--limit N]
//	caddy webhooks pause <route>
//	caddy webhooks resume <route>
//	caddy webhooks send <route> [--type T] [--data JSON]
//	caddy webhooks backfill <route> --since T [--until T] [--dry-run] [--redeliver]
//	caddy webhooks tail [--route R] [--status S]
//
// Every subcommand takes --address (or --config/--adapter, to read the
// admin address from a config, as `caddy reload` does) and --json, which
// prints the API's answer as it is instead of a table.

// maxAnswer bounds what the CLI reads from the admin API.
const maxAnswer = 64 << 20

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "webhooks",
		Usage: "stats | events <id> | deliveries | retry <delivery> | replay <route> | pause <route> | resume <route> | send <route> | backfill <route> | tail",
		Short: "Inspects and steers webhook deliveries of a running Caddy",
		Long: `
Shows and steers the deliveries of the webhooks app of a running Caddy,
through its admin API (GET/POST /webhooks/...).

  stats               per route: state, circuit, pending, in flight,
                      delivered, dead, last success and failure
  events <id>         an event, its deliveries and every attempt (time,
                      duration, status, class, error, response)
  deliveries          a page of deliveries; --route, --status
                      (pending|delivered|dead), --type (event type),
                      --since/--until (RFC 3339 or a duration before now:
                      due time if pending, final time if delivered or
                      dead, else creation time), --limit (1-1000, default
                      100), --cursor (from the previous page, same filter)
  retry <delivery>    requeues one delivery now (dead and delivered ones
                      too; attempts keep counting)
  replay <route>      requeues a route's dead (or --status delivered)
                      deliveries, optionally --since/--until a time
                      (RFC 3339) or a duration before now (36h, 2d), and
                      at most --limit of them
  pause <route>       holds a route: deliveries queue, nothing is sent
  resume <route>      releases it
  send <route>        sends one test event (--type, --data JSON; default
                      the route's sample_event) through the route's real
                      URL, headers, transform, signing and egress, and
                      shows the endpoint's answer; nothing is stored
  backfill <route>    offers events received --since T (and --until T)
                      to the route: those its topics and rule match and
                      that have no delivery for it yet get one
                      (--redeliver: even those); --dry-run only counts
  tail                prints delivery outcomes as they happen; --route,
                      --status (delivered|retry|dead)

The admin endpoint is --address (default: the one in --config, else
localhost:2019). --json prints the API's JSON answer.
`,
		CobraFunc: buildWebhooksCommand,
	})
}

func buildWebhooksCommand(cmd *cobra.Command) {
	signing.FailUnknownSubcommands(cmd)
	pf := cmd.PersistentFlags()
	pf.String("address", "", "The admin API address (default: from --config, else localhost:2019)")
	pf.StringP("config", "c", "", "Config file to read the admin address from")
	pf.StringP("adapter", "a", "", "Name of the adapter for --config")
	pf.Bool("json", false, "Print the API's JSON answer instead of a table")

	cmd.AddCommand(&cobra.Command{
		Use:   "stats",
		Short: "Shows every route's state and counters",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runAdmin(c, http.MethodGet, "/webhooks/stats", answer(func(w io.Writer, ans *statsAnswer) error {
				if o := ans.Outbox; o != nil {
					fmt.Fprintf(w, "OUTBOX %s: %s\n\n", strings.ToUpper(o.State), o.Reason)
				}
				return writeStats(w, ans.Routes)
			}))
		},
	})

	cmd.AddCommand(&cobra.Command{
		Use:   "events <event-id>",
		Short: "Shows an event, its deliveries and their attempts",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runAdmin(c, http.MethodGet, "/webhooks/events/"+url.PathEscape(args[0]), answer(func(w io.Writer, ans *eventAnswer) error {
				return writeEvent(w, ans)
			}))
		},
	})

	list := &cobra.Command{
		Use:   "deliveries [--route <name>] [--status pending|delivered|dead] [--type <event type>] [--since <time>] [--until <time>] [--limit <n>] [--cursor <cursor>]",
		Short: "Lists a page of deliveries",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			q := url.Values{}
			for _, name := range []string{"route", "status", "type", "since", "until", "cursor"} {
				if v, _ := c.Flags().GetString(name); v != "" {
					q.Set(name, v)
				}
			}
			if n, _ := c.Flags().GetInt("limit"); n != 0 || c.Flags().Changed("limit") {
				// An explicit 0 goes too, for the API to refuse.
				q.Set("limit", strconv.Itoa(n))
			}
			uri := "/webhooks/deliveries"
			if len(q) > 0 {
				uri += "?" + q.Encode()
			}
			return runAdmin(c, http.MethodGet, uri, answer(func(w io.Writer, ans *listAnswer) error {
				return writeDeliveries(w, ans)
			}))
		},
	}
	list.Flags().String("route", "", "Only this route's deliveries")
	list.Flags().String("status", "", "Only pending, delivered or dead deliveries")
	list.Flags().String("type", "", "Only deliveries of this event type")
	list.Flags().String("since", "", "From this time on: RFC 3339, or a duration before now (36h, 2d)")
	list.Flags().String("until", "", "Before this time: RFC 3339, or a duration before now")
	list.Flags().Int("limit", 0, "Page size, 1-1000 (default 100)")
	list.Flags().String("cursor", "", "Continue after the previous page (its next cursor)")
	cmd.AddCommand(list)

	cmd.AddCommand(&cobra.Command{
		Use:   "retry <delivery-id>",
		Short: "Requeues one delivery now",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runAdmin(c, http.MethodPost, "/webhooks/deliveries/"+url.PathEscape(args[0])+"/retry", answer(func(w io.Writer, ans *retryAnswer) error {
				_, err := fmt.Fprintf(w, "delivery %s (route %s) requeued; it was %s\n", ans.Delivery, ans.Route, ans.Was)
				if err == nil && ans.Held != "" {
					_, err = fmt.Fprintf(w, "route %s sends nothing now (%s): the delivery waits for it\n", ans.Route, strings.ReplaceAll(ans.Held, "_", " "))
				}
				return err
			}))
		},
	})

	replay := &cobra.Command{
		Use:   "replay <route> [--status dead|delivered] [--since <time|duration>] [--until <time|duration>] [--limit <n>]",
		Short: "Requeues a route's dead (or delivered) deliveries",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			q := url.Values{}
			for _, name := range []string{"status", "since", "until"} {
				if v, _ := c.Flags().GetString(name); v != "" {
					q.Set(name, v)
				}
			}
			if n, _ := c.Flags().GetInt("limit"); n != 0 || c.Flags().Changed("limit") {
				// An explicit 0 goes too, for the API to refuse.
				q.Set("limit", strconv.Itoa(n))
			}
			uri := "/webhooks/routes/" + url.PathEscape(args[0]) + "/replay"
			if len(q) > 0 {
				uri += "?" + q.Encode()
			}
			return runAdmin(c, http.MethodPost, uri, answer(func(w io.Writer, ans *replayAnswer) error {
				_, err := fmt.Fprintf(w, "%d deliveries of route %s requeued\n", ans.Replayed, ans.Route)
				return err
			}))
		},
	}
	replay.Flags().String("status", "dead", "Replay dead or delivered deliveries")
	replay.Flags().String("since", "", "Only those final at or after this RFC 3339 time, or this long ago (36h, 2d)")
	replay.Flags().String("until", "", "Only those final before this RFC 3339 time, or this long ago")
	replay.Flags().Int("limit", 0, "Requeue at most this many")
	cmd.AddCommand(replay)

	addToolCommands(cmd)

	for _, verb := range []string{"pause", "resume"} {
		short := "Holds a route: deliveries queue, nothing is sent"
		if verb == "resume" {
			short = "Releases a paused route"
		}
		cmd.AddCommand(&cobra.Command{
			Use:   verb + " <route>",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				return runAdmin(c, http.MethodPost, "/webhooks/routes/"+url.PathEscape(args[0])+"/"+verb, answer(func(w io.Writer, ans *pauseAnswer) error {
					state := "resumed"
					if ans.Paused {
						state = "paused"
					}
					_, err := fmt.Fprintf(w, "route %s %s\n", ans.Route, state)
					return err
				}))
			},
		})
	}
}

// runAdmin makes one admin API request and prints the answer: as it is
// with --json, else through format.
// answer decodes an admin answer of type T and hands it to write: the
// table form of a CLI command (--json prints the answer as it came).
func answer[T any](write func(w io.Writer, ans *T) error) func(io.Writer, []byte) error {
	return func(w io.Writer, b []byte) error {
		var ans T
		if err := json.Unmarshal(b, &ans); err != nil {
			return err
		}
		return write(w, &ans)
	}
}

func runAdmin(c *cobra.Command, method, uri string, format func(io.Writer, []byte) error) error {
	return runAdminBody(c, method, uri, nil, format)
}

// runAdminBody is runAdmin with a request body (JSON; nil for none).
func runAdminBody(c *cobra.Command, method, uri string, reqBody []byte, format func(io.Writer, []byte) error) error {
	body, err := adminCall(c, method, uri, reqBody)
	if err != nil {
		return err
	}
	return printAnswer(c, body, format)
}

// adminCall makes one admin API request for command c and returns the
// body of a successful answer. With --json, the body of a failed one
// (the API's JSON error) goes to standard output too, for scripts.
func adminCall(c *cobra.Command, method, uri string, reqBody []byte) ([]byte, error) {
	c.SilenceUsage = true
	f := c.Flags()
	address := adminAddress(f)
	configFile, _ := f.GetString("config")
	adapter, _ := f.GetString("adapter")
	asJSON, _ := f.GetBool("json")
	addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, configFile, adapter)
	if err != nil {
		return nil, fmt.Errorf("finding the admin API address: %v", err)
	}
	body, err := adminRequest(addr, method, uri, reqBody)
	var ae *apiCallError
	if err != nil && asJSON && errors.As(err, &ae) {
		c.OutOrStdout().Write(append(ae.body, '\n'))
	}
	return body, err
}

// printAnswer prints an answer: as it is with --json, else through
// format.
func printAnswer(c *cobra.Command, body []byte, format func(io.Writer, []byte) error) error {
	out := c.OutOrStdout()
	if asJSON, _ := c.Flags().GetBool("json"); asJSON {
		_, err := out.Write(body)
		return err
	}
	if err := format(terminalSafe{out}, body); err != nil {
		return fmt.Errorf("reading the admin API's answer: %v", err)
	}
	return nil
}

// terminalSafe writes what it is given with the characters a terminal
// would act on shown as escapes (\x1b, \u202e): the tables and texts
// of the CLI quote receivers' answers, event data and errors, and an
// endpoint's "\x1b]0;title\x07" must not retitle, clear or recolour
// the operator's terminal. Newlines and tabs, and CR before LF, stay.
type terminalSafe struct{ w io.Writer }

func (t terminalSafe) Write(p []byte) (int, error) {
	clean := true
	for i := 0; i < len(p) && clean; {
		r, n := utf8.DecodeRune(p[i:])
		clean = !terminalControl(r, p[i+n:])
		i += n
	}
	if clean {
		return t.w.Write(p)
	}
	var b bytes.Buffer
	for i := 0; i < len(p); {
		r, n := utf8.DecodeRune(p[i:])
		switch {
		case !terminalControl(r, p[i+n:]):
			b.Write(p[i : i+n])
		case r < 0x100:
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
		i += n
	}
	if _, err := t.w.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// terminalControl reports whether r, followed by next, is a control
// character or a bidirectional override a terminal would act on.
func terminalControl(r rune, next []byte) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case r == '\r':
		return len(next) == 0 || next[0] != '\n'
	case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
		return true
	case r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// apiCallError is a failed answer of the admin API: its message, and
// its JSON body as it came.
type apiCallError struct {
	msg  string
	body []byte
}

func (e *apiCallError) Error() string { return e.msg }

// adminRequest calls the admin API at addr and returns the body of a
// successful answer; a failure becomes an error with the API's message.
func adminRequest(addr, method, uri string, reqBody []byte) ([]byte, error) {
	var (
		rd  io.Reader
		hdr http.Header
	)
	if reqBody != nil {
		rd, hdr = bytes.NewReader(reqBody), http.Header{"Content-Type": {"application/json"}}
	}
	resp, err := adminAPIRequest(addr, method, uri, hdr, rd)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
}

// adminAddress is --address as caddycmd wants it: "host:port", so a
// URL copied from a browser ("http://localhost:2019/") works too.
func adminAddress(f *pflag.FlagSet) string {
	a, _ := f.GetString("address")
	a = strings.TrimPrefix(a, "http://")
	return strings.TrimSuffix(a, "/")
}

// adminAnswerWait bounds the wait for the admin API's answer to begin
// (a stream, tail, then runs as long as it lasts).
var adminAnswerWait = 30 * time.Second

// adminAPIRequest is caddycmd.AdminAPIRequest, which has no deadline,
// with a bound on the wait for the answer, and refusing an answer that
// is not hookgate's admin API's (a 2xx from another server would print
// "no routes", or "route resumed" after a pause).
func adminAPIRequest(addr, method, uri string, hdr http.Header, body io.Reader) (*http.Response, error) {
	type answer struct {
		resp *http.Response
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := caddycmd.AdminAPIRequest(addr, method, uri, hdr, body)
		got <- answer{resp, err}
	}()
	select {
	case a := <-got:
		if a.err != nil {
			return nil, adminError(addr, a.err)
		}
		if a.resp.Header.Get(apiHeader) == "" {
			a.resp.Body.Close()
			return nil, fmt.Errorf("%s answered %s %s with %s, but not as hookgate's admin API "+
				"(is --address, or the admin address in --config, that of a Caddy running hookgate?)", addr, method, uri, a.resp.Status)
		}
		return a.resp, nil
	case <-time.After(adminAnswerWait):
		// The request goes on in its goroutine until the command exits.
		return nil, fmt.Errorf("no answer from the admin API at %s within %v (is it Caddy's admin address?)", addr, adminAnswerWait)
	}
}

// adminError rewrites the error of caddycmd.AdminAPIRequest, which holds
// the status and the raw body of a failed answer, as the API's message.
func adminError(addr string, err error) error {
	msg := err.Error()
	const marker = "caddy responded with error: HTTP "
	i := strings.Index(msg, marker)
	if i < 0 {
		if strings.Contains(msg, "performing request") {
			return fmt.Errorf("%v (is Caddy running with its admin API at %s? see --address)", err, addr)
		}
		return err
	}
	rest := msg[i+len(marker):]
	code, body, ok := strings.Cut(rest, ": ")
	if !ok {
		return err
	}
	var e apiErrorBody
	switch {
	case json.Unmarshal([]byte(body), &e) != nil:
		return err
	case e.Message != "":
		return &apiCallError{msg: fmt.Sprintf("%s (HTTP %s, %s)", e.Message, code, e.Error), body: []byte(body)}
	case e.Error != "":
		// One of Caddy's own errors: {"error": message}.
		return &apiCallError{msg: fmt.Sprintf("HTTP %s: %s", code, e.Error), body: []byte(body)}
	}
	return err
}

// Formatting: tables for people; --json for programs.

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// errCause is an attempt error without the "Post https://host/…: " that
// Go's client puts first: in a table whose row names the route, it only
// took the room of the cause.
func errCause(s string) string {
	if rest, ok := strings.CutPrefix(s, "Post "); ok {
		if _, cause, ok := strings.Cut(rest, ": "); ok {
			return cause
		}
	}
	return s
}

// clip shortens s to n runes on one line.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeStats(w io.Writer, routes []RouteStats) error {
	if len(routes) == 0 {
		_, err := fmt.Fprintln(w, "no routes")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tSTATE\tCIRCUIT\tPENDING\tIN FLIGHT\tDELIVERED\tDEAD\tLAST SUCCESS\tLAST FAILURE")
	var reasons []string
	for _, r := range routes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Route, orDash(r.State), orDash(r.Circuit),
			r.Pending, r.InFlight, r.Delivered, r.Dead, fmtTime(r.LastSuccess), fmtTime(r.LastFailure))
		if r.Reason != "" {
			reasons = append(reasons, fmt.Sprintf("%s %s: %s", r.Route, r.State, r.Reason))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Long, so under the table rather than in it.
	for _, line := range reasons {
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// maxDataShown bounds the event data the table view prints.
const maxDataShown = 2048

func writeEvent(w io.Writer, ans *eventAnswer) error {
	ev := ans.Event
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Event\t%s\n", ev.ID)
	fmt.Fprintf(tw, "Type\t%s\n", ev.Type)
	if ev.Source != "" {
		fmt.Fprintf(tw, "Source\t%s\n", ev.Source)
	}
	fmt.Fprintf(tw, "Time\t%s\n", fmtTime(ev.Time))
	fmt.Fprintf(tw, "Received\t%s\n", fmtTime(ev.Received))
	fmt.Fprintf(tw, "Routes\t%s\n", orDash(strings.Join(ev.Routes, ", ")))
	if ev.TraceID != "" {
		fmt.Fprintf(tw, "Trace\t%s\n", ev.TraceID)
	}
	if ev.ContentType != "" {
		fmt.Fprintf(tw, "Content type\t%s\n", ev.ContentType)
	}
	names := make([]string, 0, len(ev.Headers))
	for k := range ev.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	for i, k := range names {
		label := ""
		if i == 0 {
			label = "Headers"
		}
		fmt.Fprintf(tw, "%s\t%s: %s\n", label, k, clip(ev.Headers[k], 100))
	}
	data := compactJSON(ev.Data)
	if ev.DataBase64 != "" {
		data = "base64:" + ev.DataBase64
	}
	if len(data) > maxDataShown {
		data = data[:maxDataShown] + fmt.Sprintf("… (%d bytes; --json shows all)", len(data))
	}
	fmt.Fprintf(tw, "Data\t%s\n", data)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(ans.Deliveries) == 0 {
		_, err := fmt.Fprintln(w, "\nNo deliveries (none matched, or they expired).")
		return err
	}
	for _, d := range ans.Deliveries {
		fmt.Fprintf(w, "\nDelivery %s to %s: %s\n", d.ID, d.Route, deliverySummary(&d))
		if len(d.History) == 0 {
			fmt.Fprintln(w, "  no attempts yet")
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  #\tTIME\tDURATION\tSTATUS\tCLASS\tERROR\tTRACE\tRESPONSE")
		for _, a := range d.History {
			status := "-"
			if a.Status != 0 {
				status = strconv.Itoa(a.Status)
			}
			resp := a.Response
			if a.ResponseEncoding != "" {
				resp = "(" + a.ResponseEncoding + ") " + resp
			}
			dur := time.Duration(a.DurationMS * float64(time.Millisecond)).Round(time.Millisecond)
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.N, fmtTime(a.Time), dur, status,
				orDash(a.Class), orDash(clip(errCause(a.Error), 100)), orDash(a.TraceID), orDash(clip(resp, 60)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// deliverySummary says where a delivery stands, in a few words.
func deliverySummary(d *DeliveryView) string {
	var b strings.Builder
	b.WriteString(d.Status)
	switch d.Status {
	case "pending":
		switch {
		case d.Waiting:
			b.WriteString(", waiting behind an earlier delivery of its order key")
		case !d.Due.IsZero():
			b.WriteString(", next attempt due " + fmtTime(d.Due))
		}
	default:
		if !d.Done.IsZero() {
			b.WriteString(" at " + fmtTime(d.Done))
		}
	}
	fmt.Fprintf(&b, " after %d attempt", d.Attempts)
	if d.Attempts != 1 {
		b.WriteString("s")
	}
	return b.String()
}

func compactJSON(raw json.RawMessage) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}

func writeDeliveries(w io.Writer, ans *listAnswer) error {
	if len(ans.Deliveries) == 0 {
		fmt.Fprintln(w, "no deliveries")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DELIVERY\tEVENT\tROUTE\tSTATUS\tATTEMPTS\tDUE/DONE\tLAST\tERROR")
		for _, d := range ans.Deliveries {
			when := d.Done
			if d.Status == "pending" {
				when = d.Due
			}
			last := "-"
			if d.LastStatus != 0 || d.LastClass != "" {
				last = strings.TrimSpace(strconv.Itoa(d.LastStatus) + " " + d.LastClass)
				if d.LastStatus == 0 {
					last = d.LastClass
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", d.ID, d.EventID, d.Route, d.Status,
				d.Attempts, fmtTime(when), last, orDash(clip(errCause(d.LastError), 100)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if ans.Next != "" {
		_, err := fmt.Fprintf(w, "more: --cursor %s\n", ans.Next)
		return err
	}
	return nil
}
