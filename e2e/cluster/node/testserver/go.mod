module llmops.dev/e2e/testserver

go 1.25
