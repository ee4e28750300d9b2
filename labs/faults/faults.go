// Package faults holds the failures the suites inject into a lab's routers, as nft
// scripts applied inside the router (`nft -f -`) and removed by deleting their table.
package faults

import "fmt"

// Blackhole is an nft script that silences a router's link: nothing enters, leaves or is
// forwarded through iface, while the carrier stays up, so BGP (or BFD) has to find out
// by itself. Its priority runs before every other hook.
func Blackhole(table, iface string) string {
	return fmt.Sprintf(`add table inet %[1]s
add chain inet %[1]s input_c { type filter hook input priority -300; }
add chain inet %[1]s forward_c { type filter hook forward priority -300; }
add chain inet %[1]s output_c { type filter hook output priority -300; }
add rule inet %[1]s input_c iifname %[2]s drop
add rule inet %[1]s forward_c iifname %[2]s drop
add rule inet %[1]s forward_c oifname %[2]s drop
add rule inet %[1]s output_c oifname %[2]s drop
`, table, iface)
}

// Remove is the command that removes a fault's table.
func Remove(table string) []string { return []string{"nft", "delete", "table", "inet", table} }
