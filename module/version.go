package module

// Version is hookgate's version, sent in the User-Agent of every delivery
// (hookgate/VERSION).
const Version = "0.1.0"
