package module

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

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
			return runAdminBody(c, http.MethodPost, uri, body, func(w io.Writer, b []byte) error {
				var ans SendResult
				if err := json.Unmarshal(b, &ans); err != nil {
					return err
				}
				return writeSend(w, &ans)
			})
		},
	}
	send.Flags().String("type", "", "Event type (default: the route's sample_event, else its first topic without wildcards)")
	send.Flags().String("data", "", `Event data as JSON (default: the route's sample_event, else {"test": true})`)
	cmd.AddCommand(send)
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
