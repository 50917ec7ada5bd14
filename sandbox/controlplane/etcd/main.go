// Command etcd runs a single-member etcd on loopback for the sandbox's kube-apiserver.
//
// It is etcd's own server (go.etcd.io/etcd/server/v3/embed) behind a few flags: the client port is picked by
// the kernel (listen on port 0), and "READY <client-url>" is printed once the member serves, so the caller
// never races another process for a port and never sleeps.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	dataDir := flag.String("data-dir", "", "directory for etcd's data (required)")
	listen := flag.String("listen", "127.0.0.1:0", "client address; port 0 picks a free one")
	noFsync := flag.Bool("unsafe-no-fsync", false, "skip fsync: faster on a busy test machine, loses data on a power cut")
	readyTimeout := flag.Duration("ready-timeout", 2*time.Minute, "give up when the member is not ready by then")
	flag.Parse()
	if *dataDir == "" {
		log.Fatal("--data-dir is required")
	}

	cfg := embed.NewConfig()
	cfg.Name = "sandbox"
	cfg.Dir = *dataDir
	cfg.LogLevel = "warn"
	cfg.UnsafeNoFsync = *noFsync
	client := url.URL{Scheme: "http", Host: *listen}
	// The peer port is never dialled (one member), but etcd needs a peer listener: let the kernel pick it.
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// kube-apiserver compacts on its own schedule (--etcd-compaction-interval); keep etcd's default off.

	server, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("starting etcd: %v", err)
	}
	defer server.Close()

	select {
	case <-server.Server.ReadyNotify():
	case <-time.After(*readyTimeout):
		log.Fatalf("etcd was not ready within %s", *readyTimeout)
	}
	fmt.Printf("READY http://%s\n", server.Clients[0].Addr())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	select {
	case sig := <-stop:
		log.Printf("etcd: %s, stopping", sig)
	case err := <-server.Err():
		log.Fatalf("etcd failed: %v", err)
	}
}
