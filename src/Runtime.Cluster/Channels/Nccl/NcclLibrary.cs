using System.Runtime.InteropServices;

namespace Runtime.Cluster.Channels.Nccl;

/// <summary>Whether NCCL can be used here, and the error that says so when it cannot.</summary>
public static class NcclLibrary
{
    static readonly Lazy<string?> LoadError = new(() => TryLoad(NcclNative.Library));

    /// <summary>True when libnccl.so.2 loads in this process.</summary>
    public static bool IsAvailable => LoadError.Value is null;

    /// <summary>Throws <see cref="NcclUnavailableException"/> unless libnccl.so.2 loads.</summary>
    public static void EnsureAvailable() => Throw(NcclNative.Library, LoadError.Value);

    /// <summary>The same check for another library name; lets tests see the error on machines that have NCCL.</summary>
    internal static void EnsureAvailable(string library) => Throw(library, TryLoad(library));

    static void Throw(string library, string? error)
    {
        if (error is null) return;
        throw new NcclUnavailableException(
            $"NCCL is not available: {library} could not be loaded ({error}). " +
            $"{TensorChannelSettings.Section}.transport = nccl needs NVIDIA's NCCL library on the library path " +
            "(LD_LIBRARY_PATH, or the CUDA image's /usr/lib/x86_64-linux-gnu) and CUDA tensors; " +
            $"on CPU nodes set {TensorChannelSettings.Section}.transport = akka or auto.");
    }

    static string? TryLoad(string library)
    {
        try
        {
            var handle = NativeLibrary.Load(library);
            NativeLibrary.Free(handle);
            return null;
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            return e.Message;
        }
    }
}
