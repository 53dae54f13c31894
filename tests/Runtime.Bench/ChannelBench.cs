using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using Akka.Actor;
using Akka.Configuration;
using Runtime.Cluster.Channels;
using TorchSharp;
using static TorchSharp.torch;

namespace Runtime.Bench;

/// <summary>
/// Tensor channel throughput between two processes on 127.0.0.1. This process sends fp32 tensors to a second process
/// of this executable, whose worker thread takes each one from its inbox and answers with a one-element tensor; once
/// per remote path (Akka remoting messages, tensor socket), each path with its own pair of ActorSystems. The same bytes
/// then go over a plain TCP socket (length, bytes, one-byte answer) as the yardstick. Also: the in-process hand-over
/// time, and how long a small actor message takes to cross to the receiving node while a 64 MiB tensor is on its way.
/// </summary>
internal static class ChannelBench
{
    public const string ReceiverCommand = "channel-receiver";
    static volatile bool _quiet;
    const int MiB = 1024 * 1024;
    static readonly string[] Paths = ["akka", "tcp"];

    static WorkerId SenderOf(int path) => new("bench", path, 0, 0);
    static WorkerId ReceiverOf(int path) => new("bench", path, 1, 0);
    static readonly WorkerId LocalReceiver = new("bench", 9, 1, 0);

    static TensorTag DataTag(long step, WorkerId from) => new(0, step, 0, TensorKind.Activation, from);
    static TensorTag AnswerTag(long step, WorkerId from) => new(0, step, 0, TensorKind.Gradient, from);

    static Config NodeConfig(string remote, int chunkSize, int window) => ConfigurationFactory.ParseString($$"""
        akka.actor.provider = remote
        akka.remote.dot-netty.tcp { hostname = "127.0.0.1", port = 0, maximum-frame-size = {{Math.Max(4 * MiB, chunkSize + 256 * 1024)}}b }
        akka.remote.log-remote-lifecycle-events = off
        akka.loglevel = WARNING
        akka.stdout-loglevel = WARNING
        runtime.channels { remote = {{remote}}, chunk-size = {{chunkSize}}b, window = {{window}} }
        """).WithChannels();

    sealed class Path(string name, ActorSystem system, WorkerId sender, WorkerId receiver) : IDisposable
    {
        public string Name { get; } = name;
        public ActorSystem System { get; } = system;
        public TensorChannelsExtension Channels => TensorChannels.Get(System);
        public WorkerId Sender { get; } = sender;
        public WorkerId Receiver { get; } = receiver;
        public TensorInbox Answers => Channels.OpenInbox(Sender);
        public long Step { get; set; }
        public Address? ReceiverNode { get; set; }
        public void Dispose() => System.Dispose();
    }

    public static int Run(string[] args)
    {
        var options = new BenchOptions(args);
        var sizes = options.Ints("sizes", [1, 16, 64]);
        int reps = options.Int("reps", 9), warmup = options.Int("warmup", 2), handOvers = options.Int("hand-overs", 200);
        var defaults = TensorChannelSettings.Create(ChannelsConfig.Default);
        int chunkSize = options.Int("chunk-size", defaults.ChunkSize), window = options.Int("window", defaults.Window);
        options.EnsureAllRead();
        var wait = TimeSpan.FromMinutes(2);

        using var child = StartReceiver(chunkSize, window);
        var paths = Paths.Select((name, i) => new Path(name, ActorSystem.Create($"bench-sender-{name}", NodeConfig(name, chunkSize, window)), SenderOf(i), ReceiverOf(i))).ToList();
        int rawPort = 0;
        foreach (var path in paths)
        {
            var ready = (child.StandardOutput.ReadLine() ?? throw new InvalidOperationException("the receiver process exited before it was ready")).Split(' ');
            if (ready.Length != 4 || ready[0] != "READY" || ready[1] != path.Name) throw new InvalidOperationException($"unexpected line from the receiver: {string.Join(' ', ready)}");
            path.ReceiverNode = Address.Parse(ready[2]);
            rawPort = int.Parse(ready[3], CultureInfo.InvariantCulture);
            path.Channels.Router.SetRemote(path.Receiver, path.ReceiverNode);
            child.StandardInput.WriteLine($"SENDER {path.Name} {path.Channels.SelfAddress}");
        }
        child.StandardInput.Flush();
        var local = paths[0].Channels.OpenInbox(LocalReceiver);

        using var raw = new TcpClient { NoDelay = true };
        raw.Connect(IPAddress.Loopback, rawPort);
        using var stream = raw.GetStream();

        Console.WriteLine($"tensor channels: fp32 tensors between two processes on 127.0.0.1; chunk {chunkSize} B, Akka window {window}; " +
                          $"median of {reps} transfers after {warmup} warm-up, each until the receiver's answer is back; 1 MiB = 1,048,576 B");
        Console.WriteLine($"{"size",-7} {"akka remoting",-22} {"tensor socket",-22} {"raw TCP",-22} {"akka/raw",-9} {"socket/raw",-11} in-process hand-over");
        long localStep = 0;
        foreach (int size in sizes)
        {
            using var source = torch.randn(size * (long)MiB / 4);
            var channel = paths.Select(path => Measure(reps, warmup, () =>
            {
                var copy = source.clone(); // the transport takes ownership; copying is not part of the transfer
                long step = path.Step++;
                var clock = Stopwatch.StartNew();
                path.Channels.Transport.Send(path.Receiver, DataTag(step, path.Sender), copy);
                path.Answers.Take(AnswerTag(step, path.Receiver), wait).Dispose();
                return clock.Elapsed;
            })).ToList();
            var tcp = Measure(reps, warmup, () =>
            {
                var clock = Stopwatch.StartNew();
                Span<byte> header = stackalloc byte[8];
                BitConverter.TryWriteBytes(header, (long)size * MiB);
                stream.Write(header);
                stream.Write(source.bytes);
                if (stream.ReadByte() != 1) throw new InvalidOperationException("the raw TCP receiver did not answer");
                return clock.Elapsed;
            });
            var handOver = Measure(handOvers, warmup, () =>
            {
                var copy = source.clone();
                var tag = DataTag(localStep++, paths[0].Sender);
                var clock = Stopwatch.StartNew();
                paths[0].Channels.Transport.Send(LocalReceiver, tag, copy);
                var received = local.Take(tag, wait);
                var elapsed = clock.Elapsed;
                received.Dispose(); // freeing 64 MiB is not part of handing it over
                return elapsed;
            });
            Console.WriteLine($"{size + " MiB",-7} {Rate(size, channel[0]),-22} {Rate(size, channel[1]),-22} {Rate(size, tcp),-22} " +
                              $"{tcp / channel[0],-9:0.00} {tcp / channel[1],-11:0.00} {handOver.TotalMicroseconds:0.0} µs");
        }

        foreach (var path in paths) ControlLatency(path, wait);

        _quiet = true; // what the receiver says while both sides shut down is not a result
        foreach (var path in paths) path.Dispose();
        child.StandardInput.Close();
        if (!child.WaitForExit(10_000)) child.Kill();
        return 0;
    }

    /// <summary>Round trips of a small actor message to the receiving node, idle and while a 64 MiB tensor goes there.</summary>
    static void ControlLatency(Path path, TimeSpan wait)
    {
        var echo = path.System.ActorSelection(new RootActorPath(path.ReceiverNode!) / "user" / "echo").ResolveOne(wait).GetAwaiter().GetResult();
        TimeSpan Ping()
        {
            var clock = Stopwatch.StartNew();
            echo.Ask<string>("ping", wait).GetAwaiter().GetResult();
            return clock.Elapsed;
        }
        var idle = Measure(20, 3, Ping);
        var loaded = new List<TimeSpan>();
        for (int round = 0; round < 3; round++)
        {
            using var big = torch.randn(64L * MiB / 4);
            long step = path.Step++;
            path.Channels.Transport.Send(path.Receiver, DataTag(step, path.Sender), big.clone());
            var done = Task.Run(() => path.Answers.Take(AnswerTag(step, path.Receiver), wait).Dispose());
            while (!done.IsCompleted) loaded.Add(Ping());
            done.GetAwaiter().GetResult();
        }
        loaded.Sort();
        Console.WriteLine($"actor message round trip, tensors over {path.Name}: idle median {idle.TotalMilliseconds:0.00} ms; during 64 MiB transfers " +
                          $"median {loaded[loaded.Count / 2].TotalMilliseconds:0.00} ms, max {loaded[^1].TotalMilliseconds:0.00} ms ({loaded.Count} pings)");
    }

    static TimeSpan Measure(int reps, int warmup, Func<TimeSpan> once)
    {
        for (int i = 0; i < warmup; i++) once();
        var times = Enumerable.Range(0, reps).Select(_ => once()).Order().ToList();
        return times[times.Count / 2];
    }

    static string Rate(int mib, TimeSpan time) =>
        string.Create(CultureInfo.InvariantCulture, $"{mib / time.TotalSeconds:0} MiB/s ({time.TotalMilliseconds:0.0} ms)");

    static Process StartReceiver(int chunkSize, int window)
    {
        var self = Environment.ProcessPath ?? throw new InvalidOperationException("cannot tell which executable this is");
        var start = new ProcessStartInfo(self)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (System.IO.Path.GetFileNameWithoutExtension(self) == "dotnet") start.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        foreach (var arg in new[] { ReceiverCommand, "--chunk-size", chunkSize.ToString(CultureInfo.InvariantCulture), "--window", window.ToString(CultureInfo.InvariantCulture) })
            start.ArgumentList.Add(arg);
        var child = Process.Start(start) ?? throw new InvalidOperationException($"could not start {self}");
        child.ErrorDataReceived += (_, e) => { if (e.Data is not null && !_quiet) Console.Error.WriteLine($"[receiver] {e.Data}"); };
        child.BeginErrorReadLine();
        return child;
    }

    /// <summary>
    /// The receiving process: per remote path an ActorSystem with an echo actor and a worker thread that takes each
    /// tensor and answers over the same path; and a raw TCP sink.
    /// </summary>
    public static int RunReceiver(string[] args)
    {
        var options = new BenchOptions(args);
        int chunkSize = options.Int("chunk-size", MiB), window = options.Int("window", 4);
        options.EnsureAllRead();
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int rawPort = ((IPEndPoint)listener.LocalEndpoint).Port;
        var systems = Paths.Select(name => ActorSystem.Create($"bench-receiver-{name}", NodeConfig(name, chunkSize, window))).ToList();
        for (int i = 0; i < Paths.Length; i++)
        {
            systems[i].ActorOf(Props.Create(() => new Echo()), "echo");
            Console.WriteLine($"READY {Paths[i]} {TensorChannels.Get(systems[i]).SelfAddress} {rawPort}");
        }
        for (int i = 0; i < Paths.Length; i++)
        {
            var line = (Console.ReadLine() ?? throw new InvalidOperationException("the sender closed stdin before naming itself")).Split(' ');
            var channels = TensorChannels.Get(systems[i]);
            channels.Router.SetRemote(SenderOf(i), Address.Parse(line[2]));
            StartWorker(channels, SenderOf(i), ReceiverOf(i));
        }

        var sink = new Thread(() =>
        {
            using var client = listener.AcceptTcpClient();
            client.NoDelay = true;
            using var stream = client.GetStream();
            Span<byte> header = stackalloc byte[8];
            while (true)
            {
                try { stream.ReadExactly(header); }
                catch (EndOfStreamException) { return; }
                using var destination = torch.empty(BitConverter.ToInt64(header), ScalarType.Byte);
                stream.ReadExactly(destination.bytes);
                stream.WriteByte(1);
            }
        }) { IsBackground = true, Name = "bench-raw-tcp" };
        sink.Start();

        while (Console.ReadLine() is not null) { }
        listener.Stop();
        foreach (var system in systems) system.Dispose();
        return 0;
    }

    /// <summary>A worker on its own thread, blocking in its inbox like a pinned torch actor.</summary>
    static void StartWorker(TensorChannelsExtension channels, WorkerId sender, WorkerId receiver)
    {
        var inbox = channels.OpenInbox(receiver);
        new Thread(() =>
        {
            try
            {
                for (long step = 0; ; step++)
                {
                    using var tensor = inbox.Take(DataTag(step, sender), Timeout.InfiniteTimeSpan);
                    channels.Transport.Send(sender, AnswerTag(step, receiver), torch.zeros(1));
                }
            }
            catch (ObjectDisposedException)
            {
                // the system is shutting down
            }
        }) { IsBackground = true, Name = $"bench-worker-{receiver}" }.Start();
    }

    sealed class Echo : ReceiveActor
    {
        public Echo() => Receive<string>(message => Sender.Tell(message));
    }
}
