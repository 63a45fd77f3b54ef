package ui

import "time"

// ConsentPage asks whether a CLI on a host may sign in as the person:
// the loopback sign-in of `llmgate login`.
type ConsentPage struct {
	Layout
	// Host is the host name the CLI reported (not verified).
	Host string
	// TokenName names the credential the CLI will get.
	TokenName string
	// Callback is where the browser goes next: host:port on loopback.
	Callback string
	// Form carries the request through the POST, field by field.
	Form ConsentForm
}

// ConsentForm are the hidden fields of the consent form.
type ConsentForm struct {
	RedirectURI, State, CodeChallenge, CodeChallengeMethod, Host, Name string
}

// DevicePage is the device sign-in page: a form to enter a code, the
// approval of one code, or the outcome.
type DevicePage struct {
	Layout
	// Mode is "enter" (type a code), "approve" (a code to approve or
	// deny), "approved", "denied" or "limited" (too many wrong codes).
	Mode string
	// Error says what was wrong with the code typed, in "enter" mode.
	Error string
	// UserCode is the code as people read it, XXXX-XXXX.
	UserCode string
	// Client says what is asking: "Claude Code", "llmgate CLI".
	Client string
	// Host and TokenName are what a CLI reported and asked for.
	Host      string
	TokenName string
	// IP and UserAgent are of the request that asked for the code.
	IP        string
	UserAgent string
	Requested time.Time
	Expires   time.Time
}

func (ConsentPage) Template() string { return "consent.html" }
func (DevicePage) Template() string  { return "device.html" }
