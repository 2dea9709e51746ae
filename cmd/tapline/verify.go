package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tapline/tapline/query/verify"
	"github.com/tapline/tapline/schemas/textsafe"
)

func init() { register(newVerifyCmd()) }

func newVerifyCmd() *cobra.Command {
	var (
		af              apiFlags
		asJSON          bool
		acceptUntrusted bool
	)
	cmd := &cobra.Command{
		Use:   "verify SESSION_ID",
		Short: "Verify that a recorded session is complete and unaltered",
		Long: `Ask the query API to verify a session: the hash chain recomputed from the stored
frames, seq continuity from 0, payload digests of unmasked frames, and the gateway's
signature over the whole session.end record, and the processor's signature on each
masked frame. Exits 0 only when the session verifies against keys the query server
trusts (trusted_gateway_keys, trusted_processor_keys); otherwise prints what is wrong
and where (seq numbers) and exits non-zero. A session without session.end (live, or
cut short) is reported as incomplete; one whose signatures are valid but whose keys
nobody configured as trusted is reported as untrusted, and exits non-zero unless
--accept-untrusted is given.`,
		Example: `  tapline verify 0192f0c4-3c1e-7b4a-9d4e-2f6a1b8c9d0e
  tapline verify $ID --json | jq .problems`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			rep, err := c.Verify(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				writeReport(cmd.OutOrStdout(), &rep)
			}
			switch {
			case rep.OK:
				return nil
			case rep.Status == verify.StatusUntrusted && acceptUntrusted:
				fmt.Fprintln(cmd.ErrOrStderr(), "untrusted signatures accepted (--accept-untrusted)")
				return nil
			case rep.Status == verify.StatusUntrusted:
				return fmt.Errorf("session %s: verification untrusted: signatures are valid, but not by keys the query server trusts; "+
					"configure trusted_gateway_keys and trusted_processor_keys there, or pass --accept-untrusted", rep.SessionID)
			}
			return fmt.Errorf("session %s: verification %s", rep.SessionID, rep.Status)
		},
	}
	af.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().BoolVar(&acceptUntrusted, "accept-untrusted", false, "exit 0 for a session whose signatures are valid but by keys not configured as trusted")
	return cmd
}

func writeReport(w io.Writer, r *verify.Report) {
	verdict := map[string]string{verify.StatusOK: "OK", verify.StatusUntrusted: "UNTRUSTED", verify.StatusIncomplete: "INCOMPLETE",
		verify.StatusFailed: "FAILED"}[r.Status]
	fmt.Fprintf(w, "session %s: %s\n", r.SessionID, verdict)
	fmt.Fprintf(w, "  frames     %d (seq 0..%d)\n", r.Frames, r.LastSeq)
	if len(r.Withheld) > 0 {
		fmt.Fprintf(w, "  withheld   payloads of seq %v (the processors failed on them; see the processing_failed alerts)\n", r.Withheld)
	}
	if r.Masked > 0 {
		fmt.Fprintf(w, "  masked     %d frames, processor signatures %s", r.Masked, r.MaskedSigs.Status)
		if len(r.MaskedSigs.Keys) > 0 {
			fmt.Fprintf(w, " (processor key %s)", strings.Join(r.MaskedSigs.Keys, ", "))
		}
		fmt.Fprintln(w)
	}
	if r.Ended {
		fmt.Fprintf(w, "  ended      %s\n", textsafe.Line(r.EndReason))
	} else {
		fmt.Fprintln(w, "  ended      no session.end: the session is live or its recording was cut short")
	}
	fmt.Fprintf(w, "  signature  %s", r.Signature.Status)
	if r.Signature.Key != "" {
		fmt.Fprintf(w, " (gateway key %s)", r.Signature.Key)
	}
	if r.Signature.Covers == "tip" {
		fmt.Fprint(w, ", made before end records were signed whole: the end reason and byte counts are not covered")
	}
	fmt.Fprintln(w)
	if r.Signature.Status == verify.SigUntrustedConsistent {
		fmt.Fprintln(w, "             consistent with the key it carries; configure trusted gateway keys to know who signed it")
	}
	if r.MaskedSigs.Status == verify.MaskedUntrusted {
		fmt.Fprintln(w, "             masked frames are consistent with the processor key they carry; configure trusted processor keys to know who masked them")
	}
	if r.FinalHash != "" {
		fmt.Fprintf(w, "  final hash %s\n", r.FinalHash)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  problem    %s\n", textsafe.Line(p.String()))
	}
	if r.ProblemsOmitted > 0 {
		fmt.Fprintf(w, "  ... and %d more problems\n", r.ProblemsOmitted)
	}
}
