// Package docs holds slc's architecture notes (ARCHITECTURE.md) and the
// tests that keep them true: the import layering the notes state
// (layers_test.go) and the paths and packages they name (paths_test.go).
// It has no code of its own.
package docs
