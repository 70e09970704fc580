// Package preview cuts the payloads that the dashboard's sources show, so
// that every source cuts them the same way.
package preview

import "unicode/utf8"

// Max caps a payload shown on the page, in bytes.
const Max = 16 << 10

// Clip returns s when it is at most Max bytes long, and otherwise its
// first Max bytes or fewer, cut before a character, followed by "…". A
// cut inside a multi-byte character would leave bytes that are not
// UTF-8, which the JSON state turns into U+FFFD.
func Clip(s string) string {
	if len(s) <= Max {
		return s
	}
	cut := Max
	// Back up to the first byte of the character that s[Max] is part
	// of; not past utf8.UTFMax bytes, in text that is not UTF-8.
	for i := Max; i > Max-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			cut = i
			break
		}
	}
	return s[:cut] + "…"
}
