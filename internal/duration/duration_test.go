package duration

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"30d", 30 * day, false},
		{"1d12h", 36 * time.Hour, false},
		{"1.5d", 36 * time.Hour, false},
		{"90m", 90 * time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{"500ms", 500 * time.Millisecond, false},
		{"0", 0, false},
		{" 7d ", 7 * day, false},
		{"-1d", -day, false},
		{"", 0, true},
		{"30", 0, true},
		{"d", 0, true},
		{"30days", 0, true},
		{"1w", 0, true},
		{"abc", 0, true},
		{"99999999999d", 0, true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("Parse(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{30 * 24 * time.Hour, "30d"},
		{36 * time.Hour, "1d12h"},
		{90 * time.Minute, "1h30m0s"},
		{0, "0s"},
	}
	for _, tt := range tests {
		if got := Format(tt.in); got != tt.want {
			t.Errorf("Format(%v) = %q, want %q", tt.in, got, tt.want)
		}
		if tt.in != 0 {
			back, err := Parse(Format(tt.in))
			if err != nil || back != tt.in {
				t.Errorf("Parse(Format(%v)) = %v, %v", tt.in, back, err)
			}
		}
	}
}
