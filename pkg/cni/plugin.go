package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/weftnet/weft/pkg/subnetfile"
)

// PluginInfo lists the CNI spec versions the plugin speaks.
var PluginInfo = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// Funcs returns the plugin's command handlers for skel.PluginMainFuncs.
func Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, GC: cmdGC, Status: cmdStatus}
}

// Keys of the runtime's config for this invocation that the delegate of a
// saved config must see (the saved copy has the ADD-time values).
var (
	delKeys = []string{"cniVersion", "prevResult"}
	gcKeys  = []string{"cniVersion", "cni.dev/valid-attachments"}
)

func cmdAdd(args *skel.CmdArgs) error {
	n, err := ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	env, _, err := LoadSubnetEnv(n.SubnetFile)
	if err != nil {
		return err
	}
	d, err := DelegateConf(n, env)
	if err != nil {
		return err
	}
	conf, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode delegate config: %w", err)
	}
	// Saved before delegating: if ADD fails halfway the runtime's DEL needs it.
	if err := saveDelegate(n.DataDir, args.ContainerID, conf); err != nil {
		return err
	}
	typ := d["type"].(string)
	res, err := invoke.DelegateAdd(context.Background(), typ, conf, nil)
	if err != nil {
		return delegateFailed(typ, "ADD", err)
	}
	if err := afterAdd(env, d, args.ContainerID, args.IfName, res); err != nil {
		return err
	}
	return types.PrintResult(res, n.CNIVersion)
}

// afterAdd is the one place that runs after a successful ADD, with the
// delegate's result: where the ebpf datapath learns the new endpoint, from
// its record (weftd's truth) and, the fast first write, the plugin's own
// registration.
func afterAdd(env subnetfile.Env, delegate map[string]any, containerID, ifName string, res types.Result) error {
	if env.BPFDir == "" {
		return nil // kernel datapath: the bridge and routes are all it needs
	}
	ep, err := EndpointFromResult(res, ifName, bridgeName(delegate))
	if err != nil {
		return fmt.Errorf("register pod with the ebpf datapath: %w", err)
	}
	if recordEndpoint(env.EndpointDir, containerID, ifName, ep) {
		registerEndpoint(env.BPFDir, ep)
	}
	return nil
}

func cmdDel(args *skel.CmdArgs) error {
	n, err := ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	env, _, _ := LoadSubnetEnv(n.SubnetFile) // zero without a subnet file
	// Also when the saved config is gone (a data dir wiped).
	forgetEndpoint(env.BPFDir, env.EndpointDir, args.ContainerID, args.IfName)
	d, err := loadDelegate(n.DataDir, args.ContainerID)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // never added, or already deleted: DEL is idempotent
	}
	if err != nil {
		return err
	}
	if err := delegate(d, args.StdinData, delKeys, "DEL", invoke.DelegateDel); err != nil {
		return err
	}
	return removeDelegate(n.DataDir, args.ContainerID)
}

func cmdCheck(args *skel.CmdArgs) error {
	n, err := ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	d, err := loadDelegate(n.DataDir, args.ContainerID)
	if err != nil {
		return fmt.Errorf("check container %s: %w (was it added by this plugin?)", args.ContainerID, err)
	}
	return delegate(d, args.StdinData, delKeys, "CHECK", invoke.DelegateCheck)
}

// cmdStatus reports the plugin unavailable until weftd has written the
// subnet file, then asks the delegate.
func cmdStatus(args *skel.CmdArgs) error {
	_, _, d, err := currentDelegate(args)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, err.Error(), "")
	}
	return delegate(d, args.StdinData, []string{"cniVersion"}, "STATUS", invoke.DelegateStatus)
}

// cmdGC drops the saved configs and endpoint records of this network's
// containers that the runtime no longer knows, then lets the delegate
// collect (host-local frees their addresses).
func cmdGC(args *skel.CmdArgs) error {
	n, env, d, err := currentDelegate(args)
	if err != nil {
		return err
	}
	var gc struct {
		Valid []types.GCAttachment `json:"cni.dev/valid-attachments"`
	}
	if err := json.Unmarshal(args.StdinData, &gc); err != nil {
		return fmt.Errorf("parse GC config: %w", err)
	}
	ids, err := savedContainers(n.DataDir, n.Name)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if !slices.ContainsFunc(gc.Valid, func(a types.GCAttachment) bool { return a.ContainerID == id }) {
			if err := removeDelegate(n.DataDir, id); err != nil {
				return err
			}
		}
	}
	collectRecords(env.EndpointDir, n.DataDir, n.Name, gc.Valid)
	return delegate(d, args.StdinData, gcKeys, "GC", invoke.DelegateGC)
}

// currentDelegate builds the delegate config from the subnet file as it is
// now, and returns the subnet file's content with it.
func currentDelegate(args *skel.CmdArgs) (*NetConf, subnetfile.Env, map[string]any, error) {
	n, err := ParseNetConf(args.StdinData)
	if err != nil {
		return nil, subnetfile.Env{}, nil, err
	}
	env, _, err := LoadSubnetEnv(n.SubnetFile)
	if err != nil {
		return nil, subnetfile.Env{}, nil, err
	}
	d, err := DelegateConf(n, env)
	if err != nil {
		return nil, subnetfile.Env{}, nil, err
	}
	return n, env, d, nil
}

// delegate runs verb on the delegate config d, with keys copied from the
// runtime's config stdin.
func delegate(d map[string]any, stdin []byte, keys []string, verb string,
	call func(context.Context, string, []byte, invoke.Exec) error) error {
	typ, err := delegateType(d)
	if err != nil {
		return err
	}
	var in map[string]json.RawMessage
	if err := json.Unmarshal(stdin, &in); err != nil {
		return fmt.Errorf("parse CNI network config: %w", err)
	}
	for _, k := range keys {
		if v, ok := in[k]; ok {
			d[k] = v
		}
	}
	conf, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode delegate config: %w", err)
	}
	if err := call(context.Background(), typ, conf, nil); err != nil {
		return delegateFailed(typ, verb, err)
	}
	return nil
}

// delegateFailed names the delegate in its error, keeping a CNI error code.
func delegateFailed(typ, verb string, err error) error {
	var e *types.Error
	if errors.As(err, &e) {
		return types.NewError(e.Code, fmt.Sprintf("delegate %s %s: %s", typ, verb, e.Msg), e.Details)
	}
	return fmt.Errorf("delegate %s %s: %w", typ, verb, err)
}
