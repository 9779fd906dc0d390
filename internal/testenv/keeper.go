package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tenantd/tenantd/internal/devenv"
)

// The keeper is the process that owns a run's shared servers. The first
// package of a run starts it (its own test binary again, with keeperEnv
// set), in a session of its own and writing to keeper.log only: `go test`
// waits for its children's output to close, so the keeper must hold none
// of it. PostgreSQL and Redis are the keeper's children and die with it
// (devenv starts them with a parent-death signal).
//
// The keeper stops the servers, removes the run directory and exits once
// no package holds the servers and either the run's parent process (the
// `go test` that ran the packages) is gone or nobody has held them for
// idleTimeout. A package that crashes releases its hold when it dies: the
// hold is a flock, which the kernel drops with the process.
const (
	keeperEnv       = "TESTENV_KEEPER"         // the run directory
	keeperServers   = "TESTENV_KEEPER_SERVERS" // "postgres", "redis" or both, comma-separated
	keeperParentEnv = "TESTENV_KEEPER_PARENT"  // pid whose end ends the run; 0 for none
	idleTimeout     = 60 * time.Second
	keeperPoll      = 200 * time.Millisecond
)

// state is what the keeper publishes in state.json.
type state struct {
	AdminURL string `json:"admin_url,omitempty"` // superuser URL of the shared PostgreSQL
	RedisURL string `json:"redis_url,omitempty"` // the shared Redis, database 0
	Keeper   int    `json:"keeper"`
}

func (r run) readState() (state, error) {
	b, err := os.ReadFile(r.path("state.json"))
	if err != nil {
		return state{}, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return state{}, fmt.Errorf("%s: %w", r.path("state.json"), err)
	}
	return st, nil
}

func (r run) writeState(st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := r.path("state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, r.path("state.json"))
}

// join returns the run's shared servers, starting them when the run has
// none yet, and holds them until release is called (or the process ends).
func join(ctx context.Context, postgres, redis bool) (st state, r run, release func(), err error) {
	if r, err = currentRun(); err != nil {
		return state{}, r, nil, err
	}
	l, err := r.lock()
	if err != nil {
		return state{}, r, nil, err
	}
	defer l.Close()
	st, err = r.readState()
	keeperAlive := !free(r.path("keeper.lock"), syscall.LOCK_SH)
	switch {
	case err == nil && keeperAlive:
		if (postgres && st.AdminURL == "") || (redis && st.RedisURL == "") {
			return state{}, r, nil, fmt.Errorf("the servers of run %s lack one this package needs: do TEST_DATABASE_URL and TEST_REDIS_URL differ between its packages?", r.dir)
		}
	case err == nil || errors.Is(err, fs.ErrNotExist):
		// No keeper, or one that died without cleaning up: its servers
		// died with it.
		if st, err = r.startKeeper(ctx, postgres, redis); err != nil {
			return state{}, r, nil, err
		}
	default:
		return state{}, r, nil, err
	}
	hold, _, err := lockFile(r.path("holders.lock"), syscall.LOCK_SH)
	if err != nil {
		return state{}, r, nil, err
	}
	return st, r, hold.Close, nil
}

// startKeeper starts the keeper and waits for its servers to answer.
func (r run) startKeeper(ctx context.Context, postgres, redis bool) (state, error) {
	if err := os.Remove(r.path("state.json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return state{}, err
	}
	exe, err := os.Executable()
	if err != nil {
		return state{}, fmt.Errorf("start keeper: %w", err)
	}
	logFile, err := os.OpenFile(r.path("keeper.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return state{}, fmt.Errorf("start keeper: %w", err)
	}
	defer logFile.Close()
	var servers []string
	if postgres {
		servers = append(servers, "postgres")
	}
	if redis {
		servers = append(servers, "redis")
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), keeperEnv+"="+r.dir, keeperServers+"="+strings.Join(servers, ","),
		keeperParentEnv+"="+strconv.Itoa(r.parent))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return state{}, fmt.Errorf("start keeper: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			return state{}, fmt.Errorf("the keeper of the shared servers exited: %v\n%s", err, devenv.LogTail(r.path("keeper.log")))
		case <-ctx.Done():
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				slog.Warn("testenv: could not stop the keeper", "pid", cmd.Process.Pid, "err", err)
			}
			return state{}, fmt.Errorf("the shared servers did not start: %w\n%s", ctx.Err(), devenv.LogTail(r.path("keeper.log")))
		case <-tick.C:
			if st, err := r.readState(); err == nil {
				return st, nil
			}
		}
	}
}

// keep is the keeper's main: it starts the servers, publishes their URLs
// and stops them when the run is over.
func keep(dir string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	parent, _ := strconv.Atoi(os.Getenv(keeperParentEnv))
	r := run{dir: dir, parent: parent}
	kl, ok, err := lockFile(r.path("keeper.lock"), syscall.LOCK_EX|syscall.LOCK_NB)
	if err != nil || !ok {
		log.Error("testenv keeper: another keeper holds the run", "dir", dir, "err", err)
		return 1
	}
	defer kl.Close()
	servers := os.Getenv(keeperServers)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	var env *devenv.Env
	if strings.Contains(servers, "postgres") {
		env, err = devenv.Start(ctx, log)
	} else {
		env, err = devenv.StartRedisOnly(ctx, log)
	}
	cancel()
	if err != nil {
		log.Error("testenv keeper: start servers", "err", err)
		return 1
	}
	st := state{AdminURL: env.AdminURL, RedisURL: env.RedisURL, Keeper: os.Getpid()}
	if err := r.writeState(st); err != nil {
		env.Stop()
		log.Error("testenv keeper: write state", "err", err)
		return 1
	}
	log.Info("testenv keeper: serving", "postgres", st.AdminURL, "redis", st.RedisURL, "parent", parent)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	tick := time.NewTicker(keeperPoll)
	defer tick.Stop()
	lastHeld := time.Now()
	for {
		select {
		case sig := <-stop:
			log.Info("testenv keeper: signalled; stopping", "signal", sig)
			if err := os.Remove(r.path("state.json")); err != nil {
				log.Warn("testenv keeper: remove state", "err", err)
			}
			env.Stop()
			return 0
		case <-tick.C:
		}
		if !free(r.path("holders.lock"), syscall.LOCK_EX) {
			lastHeld = time.Now()
			continue
		}
		parentGone := parent > 0 && !alive(parent)
		if !parentGone && time.Since(lastHeld) < idleTimeout {
			continue
		}
		if r.leave(log, env) {
			log.Info("testenv keeper: stopped", "parent_gone", parentGone)
			return 0
		}
		lastHeld = time.Now()
	}
}

// leave stops the servers and removes the run directory unless a package
// joined meanwhile.
func (r run) leave(log *slog.Logger, env *devenv.Env) bool {
	l, err := r.lock()
	if err != nil {
		log.Error("testenv keeper: lock run", "err", err)
		return false
	}
	defer l.Close()
	if !free(r.path("holders.lock"), syscall.LOCK_EX) {
		return false
	}
	if err := os.Remove(r.path("state.json")); err != nil {
		log.Warn("testenv keeper: remove state", "err", err)
	}
	env.Stop()
	if err := os.RemoveAll(r.dir); err != nil {
		log.Warn("testenv keeper: remove run directory", "err", err)
	}
	return true
}
