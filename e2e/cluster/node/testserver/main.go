// testserver is the program of the real-node e2e test image: a static HTTP server that reports
// what the pod it runs in looks like from the inside (identity, capabilities, seccomp, mounts) and
// can fetch a URL, so a test can check the pod's network paths (Service ClusterIP, the node IP).
//
//	GET /healthz            200 "ok" (the readiness probe)
//	GET /status             JSON: uid, gid, groups, capEff, seccomp, shm size, data dir write result
//	GET /fetch?url=URL      JSON: status code and body of a GET of URL made from inside the pod
//	GET /metrics            Prometheus text format: requests served so far (what the plane's Prometheus scrapes)
//
// Every request is logged to stdout, so `kubectl logs` has something to show.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// procStatus returns the named fields of /proc/self/status.
func procStatus(fields ...string) map[string]string {
	out := map[string]string{}
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(raw), "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, f := range fields {
			if key == f {
				out[f] = strings.TrimSpace(value)
			}
		}
	}
	return out
}

func status(dataDir, shmDir string) map[string]any {
	groups, _ := os.Getgroups()
	proc := procStatus("CapEff", "Seccomp", "NoNewPrivs")
	result := map[string]any{
		"uid": os.Getuid(), "gid": os.Getgid(), "groups": groups,
		"capEff": proc["CapEff"], "seccomp": proc["Seccomp"], "noNewPrivs": proc["NoNewPrivs"],
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(shmDir, &fs); err == nil {
		result["shmBytes"] = fs.Blocks * uint64(fs.Bsize)
	} else {
		result["shmError"] = err.Error()
	}
	host, _ := os.Hostname()
	for key, dir := range map[string]string{"data": dataDir, "shm": shmDir} {
		path := filepath.Join(dir, "written-by-"+host)
		if err := os.WriteFile(path, []byte(host+"\n"), 0o644); err != nil {
			result[key+"Write"] = err.Error()
		} else {
			result[key+"Write"] = "ok"
		}
	}
	return result
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func main() {
	addr := ":" + env("PORT", "8080")
	dataDir := env("DATA_DIR", "/data")
	shmDir := env("SHM_DIR", "/dev/shm")
	client := &http.Client{Timeout: 5 * time.Second}
	var served atomic.Int64

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, status(dataDir, shmDir))
	})
	mux.HandleFunc("/fetch", func(w http.ResponseWriter, r *http.Request) {
		resp, err := client.Get(r.URL.Query().Get("url"))
		if err != nil {
			writeJSON(w, map[string]any{"error": err.Error()})
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		writeJSON(w, map[string]any{"status": resp.StatusCode, "body": string(body)})
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# HELP testserver_requests_total HTTP requests served.\n"+
			"# TYPE testserver_requests_total counter\ntestserver_requests_total %d\n", served.Load())
	})
	logged := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		// Scrapes (every few seconds) would drown the requests a test looks for in `kubectl logs`.
		if r.URL.Path != "/metrics" {
			log.Printf("%s %s from %s", r.Method, r.URL.RequestURI(), r.RemoteAddr)
		}
		mux.ServeHTTP(w, r)
	})
	log.SetOutput(os.Stdout)
	log.Printf("testserver listening on %s (uid %d)", addr, os.Getuid())
	log.Fatal(http.ListenAndServe(addr, logged))
}
