// runc-wrapper: an OCI runtime that drops the capabilities this machine cannot grant, then
// runs the real runc with the same arguments.
//
// Some VMs run every process with a capability bounding set that lacks CAP_SYS_RESOURCE. A
// privileged container (docker run --privileged, every kind node; a privileged pod such as
// kube-proxy) asks for all capabilities, and runc then fails with "unable to apply caps:
// operation not permitted". Before `runc create` / `runc run` this wrapper removes each
// capability that is missing from its own bounding set from the five capability sets of the
// bundle's config.json; before `runc exec` it does the same in the --process file. Without
// CAP_SYS_RESOURCE a process also cannot lower its oom_score_adj, so a create/run asking for a
// lower value than the wrapper's own (containerd asks -998 for every pod sandbox) gets the
// wrapper's value instead; runc would otherwise fail with "failed to update
// /proc/self/oom_score_adj: Permission denied". Every other command goes to runc untouched.
// Register it as a runtime:
//
//	dockerd --add-runtime wrap=/path/runc-wrapper --default-runtime wrap
//	containerd: [...runtimes.runc.options] BinaryName = "/path/runc-wrapper"
//
// The real runc: $RUNC_WRAPPER_RUNC, else the first of /usr/local/sbin/runc, /usr/sbin/runc,
// /usr/bin/runc, /usr/local/bin/runc that exists and is not this program. Set
// RUNC_WRAPPER_LOG to a file to log what was changed.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// capNames maps capability numbers (linux/capability.h) to their OCI names.
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

func logf(format string, args ...any) {
	path := os.Getenv("RUNC_WRAPPER_LOG")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "runc-wrapper[%d]: "+format+"\n", append([]any{os.Getpid()}, args...)...)
}

// missingCaps returns the OCI names of the known capabilities absent from our bounding set.
func missingCaps() map[string]bool {
	missing := map[string]bool{}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return missing
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "CapBnd:") {
			continue
		}
		bnd, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "CapBnd:")), 16, 64)
		if err != nil {
			return missing
		}
		last := len(capNames) - 1
		if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
			if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n < last {
				last = n
			}
		}
		for i := 0; i <= last; i++ {
			if bnd&(1<<uint(i)) == 0 {
				missing[capNames[i]] = true
			}
		}
	}
	return missing
}

// filterCaps removes the missing capabilities from the capability object caps (the
// "capabilities" member of an OCI process). It reports whether anything changed.
func filterCaps(caps map[string]any, missing map[string]bool) bool {
	changed := false
	for _, set := range []string{"bounding", "effective", "inheritable", "permitted", "ambient"} {
		list, ok := caps[set].([]any)
		if !ok {
			continue
		}
		kept := make([]any, 0, len(list))
		for _, c := range list {
			if s, ok := c.(string); ok && missing[strings.ToUpper(s)] {
				changed = true
				continue
			}
			kept = append(kept, c)
		}
		caps[set] = kept
	}
	return changed
}

// editFile rewrites the JSON file at path, keeping every value as it was (numbers too),
// after removing missing capabilities from the process object that locate returns.
func editFile(path string, locate func(doc map[string]any) map[string]any, missing map[string]bool) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	proc := locate(doc)
	if proc == nil {
		return nil
	}
	changed := false
	if caps, ok := proc["capabilities"].(map[string]any); ok && filterCaps(caps, missing) {
		changed = true
		logf("removed %v from %s", keys(missing), path)
	}
	if missing["CAP_SYS_RESOURCE"] && clampOOMScoreAdj(proc) {
		changed = true
	}
	if !changed {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".runc-wrapper.tmp"
	if err := os.WriteFile(tmp, out, st.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// clampOOMScoreAdj raises process.oomScoreAdj to our own oom_score_adj when it asks for less
// (lowering it needs CAP_SYS_RESOURCE). It reports whether it changed the value.
func clampOOMScoreAdj(proc map[string]any) bool {
	n, ok := proc["oomScoreAdj"].(json.Number)
	if !ok {
		return false
	}
	want, err := n.Int64()
	if err != nil {
		return false
	}
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return false
	}
	own, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || want >= own {
		return false
	}
	proc["oomScoreAdj"] = json.Number(strconv.FormatInt(own, 10))
	logf("oomScoreAdj %d -> %d", want, own)
	return true
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// flagValue finds the value of a flag (--name value, --name=value, -short value) in args.
func flagValue(args []string, long, short string) (string, bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		for _, name := range []string{"--" + long, "-" + long, short} {
			if name == "" {
				continue
			}
			if a == name && i+1 < len(args) {
				return args[i+1], true
			}
			if strings.HasPrefix(a, name+"=") {
				return a[len(name)+1:], true
			}
		}
	}
	return "", false
}

// globalFlagsWithValue are runc's global options that take a value (they come before the
// command).
var globalFlagsWithValue = map[string]bool{
	"--log": true, "--log-format": true, "--root": true, "--criu": true, "--rootless": true,
}

// command returns runc's command (the first non-flag argument) and the arguments after it.
func command(args []string) (string, []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			if globalFlagsWithValue[a] || globalFlagsWithValue["-"+strings.TrimLeft(a, "-")] {
				i++
			}
			continue
		}
		return a, args[i+1:]
	}
	return "", nil
}

func realRunc() (string, error) {
	if p := os.Getenv("RUNC_WRAPPER_RUNC"); p != "" {
		return p, nil
	}
	self, _ := os.Executable()
	self, _ = filepath.EvalSymlinks(self)
	for _, p := range []string{"/usr/local/sbin/runc", "/usr/sbin/runc", "/usr/bin/runc", "/usr/local/bin/runc"} {
		r, err := filepath.EvalSymlinks(p)
		if err != nil || r == self {
			continue
		}
		if st, err := os.Stat(r); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("runc-wrapper: no runc found (set RUNC_WRAPPER_RUNC)")
}

func main() {
	args := os.Args[1:]
	cmd, rest := command(args)
	var err error
	switch cmd {
	case "create", "run":
		if missing := missingCaps(); len(missing) > 0 {
			bundle, ok := flagValue(rest, "bundle", "-b")
			if !ok {
				bundle = "."
			}
			err = editFile(filepath.Join(bundle, "config.json"), func(doc map[string]any) map[string]any {
				p, _ := doc["process"].(map[string]any)
				return p
			}, missing)
		}
	case "exec":
		if missing := missingCaps(); len(missing) > 0 {
			if proc, ok := flagValue(rest, "process", "-p"); ok {
				err = editFile(proc, func(doc map[string]any) map[string]any { return doc }, missing)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "runc-wrapper: %v\n", err)
		logf("error: %v", err)
		os.Exit(1)
	}
	runc, err := realRunc()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	err = syscall.Exec(runc, append([]string{runc}, args...), os.Environ())
	fmt.Fprintf(os.Stderr, "runc-wrapper: exec %s: %v\n", runc, err)
	os.Exit(1)
}
