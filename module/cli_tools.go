package module

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// The operator tools of `caddy webhooks`: send, backfill and tail.

func addToolCommands(cmd *cobra.Command) {
	send := &cobra.Command{
		Use:   "send <route> [--type <event-type>] [--data <json>]",
		Short: "Sends one test event through a route and shows the endpoint's answer",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var req sendRequest
			req.Type, _ = c.Flags().GetString("type")
			if data, _ := c.Flags().GetString("data"); data != "" {
				if !json.Valid([]byte(data)) {
					return fmt.Errorf("--data is not valid JSON: %s", clip(data, 60))
				}
				req.Data = json.RawMessage(data)
			}
			body, err := json.Marshal(req)
			if err != nil {
				return err
			}
			uri := "/webhooks/routes/" + url.PathEscape(args[0]) + "/send"
			ans, err := adminCall(c, http.MethodPost, uri, body)
			if err != nil {
				return err
			}
			if err := printAnswer(c, ans, answer(func(w io.Writer, ans *SendResult) error {
				return writeSend(w, ans)
			})); err != nil {
				return err
			}
			// A test that failed exits non-zero, so that a script
			// (send erp && deploy) can tell.
			var res SendResult
			if json.Unmarshal(ans, &res) == nil && res.Class != "" {
				return fmt.Errorf("the test delivery through route %s failed: %s", res.Route, res.Class)
			}
			return nil
		},
	}
	send.Flags().String("type", "", "Event type (default: the route's sample_event, else its first topic without wildcards)")
	send.Flags().String("data", "", `Event data as JSON (default: the route's sample_event, else {"test": true})`)
	cmd.AddCommand(send)

	backfill := &cobra.Command{
		Use:   "backfill <route> --since <time|duration> [--until <time|duration>] [--dry-run] [--redeliver]",
		Short: "Offers stored events of a time window to a route",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			q := url.Values{}
			for _, name := range []string{"since", "until"} {
				if v, _ := c.Flags().GetString(name); v != "" {
					q.Set(name, v)
				}
			}
			if q.Get("since") == "" {
				return fmt.Errorf("--since is required: an RFC 3339 time or a duration before now (2h, 2d)")
			}
			for _, name := range []string{"dry-run", "redeliver"} {
				if v, _ := c.Flags().GetBool(name); v {
					q.Set(strings.ReplaceAll(name, "-", "_"), "true")
				}
			}
			uri := "/webhooks/routes/" + url.PathEscape(args[0]) + "/backfill?" + q.Encode()
			return runAdmin(c, http.MethodPost, uri, answer(func(w io.Writer, ans *BackfillResult) error {
				return writeBackfill(w, ans)
			}))
		},
	}
	backfill.Flags().String("since", "", "Events received at or after this RFC 3339 time, or this long ago (36h, 2d)")
	backfill.Flags().String("until", "", "Events received before this RFC 3339 time, or this long ago (default: now)")
	backfill.Flags().Bool("dry-run", false, "Count what would be queued; queue nothing")
	backfill.Flags().Bool("redeliver", false, "Queue a delivery also for events that already have one for the route")
	cmd.AddCommand(backfill)

	addTailCommand(cmd)
}

// writeBackfill prints a backfill's counts.
func writeBackfill(w io.Writer, ans *BackfillResult) error {
	verb := "queued"
	if ans.DryRun {
		verb = "would be queued (dry run)"
	}
	_, err := fmt.Fprintf(w, "route %s: %d events offered, %d matched, %d %s, %d skipped (the route already had a delivery for them)\n",
		ans.Route, ans.Offered, ans.Matched, ans.Queued, verb, ans.Skipped)
	return err
}

// writeSend prints a test send's answer: a summary line, the response
// headers, then the body excerpt.
func writeSend(w io.Writer, ans *SendResult) error {
	dur := time.Duration(ans.DurationMS * float64(time.Millisecond)).Round(time.Millisecond)
	status := "no answer"
	if ans.Status != 0 {
		status = strconv.Itoa(ans.Status) + " " + http.StatusText(ans.Status)
	}
	fmt.Fprintf(w, "route %s: %s in %s (test event %s, type %s)\n", ans.Route, status, dur, ans.EventID, ans.EventType)
	if ans.Class != "" {
		fmt.Fprintf(w, "failed: %s: %s\n", ans.Class, ans.Error)
	}
	names := make([]string, 0, len(ans.Headers))
	for k := range ans.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		for _, v := range ans.Headers[k] {
			fmt.Fprintf(w, "%s: %s\n", k, v)
		}
	}
	if ans.Body != "" {
		if ans.BodyEncoding != "" {
			fmt.Fprintf(w, "\n(%s) %s\n", ans.BodyEncoding, ans.Body)
		} else {
			fmt.Fprintf(w, "\n%s\n", ans.Body)
		}
	}
	return nil
}

func addTailCommand(cmd *cobra.Command) {
	tail := &cobra.Command{
		Use:   "tail [--route <name>] [--status delivered|retry|dead]",
		Short: "Prints delivery outcomes as they happen",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			c.SilenceUsage = true
			q := url.Values{}
			for _, name := range []string{"route", "status"} {
				if v, _ := c.Flags().GetString(name); v != "" {
					q.Set(name, v)
				}
			}
			uri := "/webhooks/tail"
			if len(q) > 0 {
				uri += "?" + q.Encode()
			}
			f := c.Flags()
			address := adminAddress(f)
			configFile, _ := f.GetString("config")
			adapter, _ := f.GetString("adapter")
			asJSON, _ := f.GetBool("json")
			addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, configFile, adapter)
			if err != nil {
				return fmt.Errorf("finding the admin API address: %v", err)
			}
			resp, err := adminAPIRequest(addr, http.MethodGet, uri, http.Header{"Accept": {"text/event-stream"}}, nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			return readTail(resp.Body, terminalSafe{c.OutOrStdout()}, asJSON)
		},
	}
	tail.Flags().String("route", "", "Only this route's outcomes")
	tail.Flags().String("status", "", "Only outcomes that left the delivery delivered, retry (pending again) or dead")
	cmd.AddCommand(tail)
}

// readTail prints the outcomes of an event stream, one line each: as a
// table row, or with asJSON the Outcome JSON as it came. It returns when
// the stream ends.
func readTail(r io.Reader, w io.Writer, asJSON bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			event = ""
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data := strings.TrimPrefix(line, "data: ")
			if event == "dropped" {
				var d struct{ Dropped int64 }
				_ = json.Unmarshal([]byte(data), &d)
				fmt.Fprintf(w, "… %d outcomes dropped so far: this tail fell behind\n", d.Dropped)
				continue
			}
			if asJSON {
				fmt.Fprintln(w, data)
				continue
			}
			var o Outcome
			if err := json.Unmarshal([]byte(data), &o); err != nil {
				return fmt.Errorf("reading the admin API's stream: %v", err)
			}
			fmt.Fprintln(w, tailLine(&o))
		}
	}
	return sc.Err()
}

// tailLine is one outcome on one line.
func tailLine(o *Outcome) string {
	dur := time.Duration(o.DurationMS * float64(time.Millisecond)).Round(time.Millisecond)
	code := "-"
	if o.HTTPStatus != 0 {
		code = strconv.Itoa(o.HTTPStatus)
	}
	line := fmt.Sprintf("%s  %s  %s  %s  %s  #%d  %s  %s  %s  %s", o.Time.UTC().Format(time.RFC3339Nano), o.Route, o.DeliveryID,
		o.EventID, o.EventType, o.Attempt, o.Status, code, orDash(o.Class), dur)
	if o.Error != "" {
		line += "  " + clip(errCause(o.Error), 100)
	}
	if !o.Next.IsZero() {
		line += "  next " + fmtTime(o.Next)
	}
	return line
}
