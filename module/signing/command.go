package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// `caddy webhooks-key …`: create and inspect Standard Webhooks keys.
//
//	caddy webhooks-key generate [-o FILE]   new whsk_ key (line 1) and its whpk_ public key (line 2)
//	caddy webhooks-key public KEY|-         whpk_ public key of a whsk_ key ("-": read it from stdin)
//	caddy webhooks-key secret [-o FILE]     new random whsec_ HMAC secret
//
// With -o the secret part is written to FILE (mode 0600, which must not
// exist yet) instead of stdout, ready for `{file.FILE}` in the Caddyfile.

// whsecBytes is the size of generated whsec_ secrets; Standard Webhooks asks
// for 24 to 64 random bytes.
const whsecBytes = 32

// maxKeyInput bounds what `public -` reads from stdin.
const maxKeyInput = 64 << 10

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "webhooks-key",
		Usage: "generate [--output <file>] | public <whsk_key>|- | secret [--output <file>]",
		Short: "Creates and inspects Standard Webhooks signing keys",
		Long: `
Creates and inspects the keys used by 'sign' (Standard Webhooks HMAC, whsec_)
and 'sign ed25519' (Standard Webhooks v1a, whsk_/whpk_) in the webhooks app.

  generate  prints a new ed25519 secret key (whsk_…, for the Caddyfile) on the
            first line and its public key (whpk_…, for receivers) on the second.
  public    prints the whpk_ public key of a whsk_ key. Pass - to read the key
            from stdin, so that it does not end up in the shell history:
              caddy webhooks-key public - < /etc/hookgate/erp.whsk
  secret    prints a new random whsec_ HMAC secret.

With --output, generate and secret write the secret key to the named file
(created with mode 0600; it must not exist) instead of printing it, ready for
{file.<path>} in the Caddyfile; generate then prints only the public key.
`,
		CobraFunc: func(cmd *cobra.Command) {
			FailUnknownSubcommands(cmd)
			gen := &cobra.Command{
				Use:   "generate [--output <file>]",
				Short: "Prints a new whsk_ ed25519 key and its whpk_ public key",
				Args:  cobra.NoArgs,
				RunE: func(c *cobra.Command, _ []string) error {
					out, _ := c.Flags().GetString("output")
					return runKeyGenerate(rand.Reader, c.OutOrStdout(), out)
				},
			}
			gen.Flags().StringP("output", "o", "", "Write the whsk_ key to this file (mode 0600) instead of stdout")
			cmd.AddCommand(gen)

			pub := &cobra.Command{
				Use:   "public <whsk_key>|-",
				Short: "Prints the whpk_ public key of a whsk_ key (- reads it from stdin)",
				Args:  cobra.ExactArgs(1),
				RunE: func(c *cobra.Command, args []string) error {
					return runKeyPublic(args[0], c.InOrStdin(), c.OutOrStdout())
				},
			}
			cmd.AddCommand(pub)

			sec := &cobra.Command{
				Use:   "secret [--output <file>]",
				Short: "Prints a new random whsec_ HMAC secret",
				Args:  cobra.NoArgs,
				RunE: func(c *cobra.Command, _ []string) error {
					out, _ := c.Flags().GetString("output")
					return runKeySecret(rand.Reader, c.OutOrStdout(), out)
				},
			}
			sec.Flags().StringP("output", "o", "", "Write the whsec_ secret to this file (mode 0600) instead of stdout")
			cmd.AddCommand(sec)
		},
	})
}

// generateKeyPair returns a new whsk_ key (the base64 of the 32-byte seed)
// and its whpk_ public key.
func generateKeyPair(r io.Reader) (whsk, whpk string, err error) {
	pub, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return "", "", fmt.Errorf("generating ed25519 key: %w", err)
	}
	return formatWhsk(priv), formatWhpk(pub), nil
}

// generateSecret returns a new random whsec_ secret.
func generateSecret(r io.Reader) (string, error) {
	key := make([]byte, whsecBytes)
	if _, err := io.ReadFull(r, key); err != nil {
		return "", fmt.Errorf("generating secret: %w", err)
	}
	return formatWhsec(key), nil
}

func runKeyGenerate(r io.Reader, stdout io.Writer, output string) error {
	whsk, whpk, err := generateKeyPair(r)
	if err != nil {
		return err
	}
	if output != "" {
		if err := writeSecretFile(output, whsk); err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, whpk)
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n%s\n", whsk, whpk)
	return err
}

func runKeySecret(r io.Reader, stdout io.Writer, output string) error {
	whsec, err := generateSecret(r)
	if err != nil {
		return err
	}
	if output != "" {
		return writeSecretFile(output, whsec)
	}
	_, err = fmt.Fprintln(stdout, whsec)
	return err
}

// runKeyPublic prints the whpk_ key for arg, or for the key read from stdin
// when arg is "-".
func runKeyPublic(arg string, stdin io.Reader, stdout io.Writer) error {
	key := arg
	if arg == "-" {
		b, err := io.ReadAll(io.LimitReader(stdin, maxKeyInput+1))
		if err != nil {
			return fmt.Errorf("reading key from stdin: %w", err)
		}
		if len(b) > maxKeyInput {
			return errors.New("reading key from stdin: input too long")
		}
		key = string(b)
	}
	key = strings.TrimSpace(key)
	if key == "" {
		return errors.New("no key given (pass a whsk_ key, or - to read it from stdin)")
	}
	whpk, err := publicKey(key)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, whpk)
	return err
}

// writeSecretFile creates path with mode 0600 and writes secret and a
// newline (which {file.*} strips). It refuses to overwrite.
func writeSecretFile(path, secret string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// FailUnknownSubcommands makes cmd, a command of subcommands registered
// with Caddy, fail on an argument that names none of them. Without a Run,
// cobra prints the help for any argument and exits 0: a misspelt
// subcommand in a script would pass.
func FailUnknownSubcommands(cmd *cobra.Command) {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			c.SilenceUsage = true
			return fmt.Errorf("unknown command %q for %q (see --help)", args[0], c.CommandPath())
		}
		return c.Help()
	}
}
