//go:build race

package persist

// raceEnabled is set when the tests run under the race detector, which
// makes big tests several times slower.
const raceEnabled = true
