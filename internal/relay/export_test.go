package relay

// StartEmbeddedOn starts the embedded server on a given port, so a test can
// restart it where the relay expects it.
var StartEmbeddedOn = startEmbedded
