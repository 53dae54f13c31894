using static TorchSharp.torch;

namespace Runtime.Cluster.Channels;

/// <summary>The transport workers use: asks the router where the receiver lives and picks the in-process or remote path.</summary>
public sealed class RoutedTensorTransport(TensorRouter router, ITensorTransport inProcess, ITensorTransport remote) : ITensorTransport
{
    public void Send(WorkerId to, TensorTag tag, Tensor tensor)
    {
        switch (router.Resolve(to))
        {
            case LocalRoute:
                inProcess.Send(to, tag, tensor);
                break;
            case RemoteRoute:
                remote.Send(to, tag, tensor);
                break;
            case var other:
                throw new InvalidOperationException($"no transport for route {other} of worker {to}");
        }
    }
}
