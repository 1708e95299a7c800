// Command etcd is the upstream etcd server. go.etcd.io/etcd/server/v3 replaces its sibling
// modules with relative paths, so `go install ...@version` refuses it; this wrapper module
// depends on the published releases instead and calls the same entry point as upstream.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
