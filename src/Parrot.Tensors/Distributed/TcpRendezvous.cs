using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Parrot.Tensors.Distributed;

/// <summary>
/// The bootstrap of a torchrun-style launch (no MPI): rank 0 listens on MASTER_ADDR:MASTER_PORT and sends its
/// few bytes (NCCL's unique id) to each of the other ranks, which connect (retrying while rank 0 starts up).
/// Only these bytes travel here; the collectives themselves are NCCL's.
/// </summary>
internal static class TcpRendezvous
{
    internal static void Share(Span<byte> bytes, LaunchInfo launch, TimeSpan timeout)
    {
        var host = Environment.GetEnvironmentVariable("MASTER_ADDR") is { Length: > 0 } h ? h : "127.0.0.1";
        int port = DistributedLaunch.IntFromEnvironment("MASTER_PORT")
                   ?? throw new DistributedException("a RANK/WORLD_SIZE launch needs MASTER_PORT (and MASTER_ADDR) for rank 0's rendezvous");
        var clock = Stopwatch.StartNew();
        if (launch.Rank == 0)
        {
            var listener = new TcpListener(IPAddress.Any, port);
            try
            {
                listener.Start(launch.WorldSize);
                for (int served = 1; served < launch.WorldSize; served++)
                {
                    var accept = listener.AcceptTcpClientAsync();
                    if (!accept.Wait(Remaining(clock, timeout)))
                        throw new CollectiveTimeoutException($"rendezvous on port {port}: {served - 1} of {launch.WorldSize - 1} ranks connected within {timeout.TotalSeconds:G4} s");
                    using var client = accept.Result;
                    client.GetStream().Write(bytes);
                }
            }
            finally { listener.Stop(); }
            return;
        }
        while (true)
        {
            try
            {
                using var client = new TcpClient();
                if (!client.ConnectAsync(host, port).Wait(Remaining(clock, timeout))) throw new SocketException((int)SocketError.TimedOut);
                var stream = client.GetStream();
                stream.ReadTimeout = (int)Math.Max(1, Remaining(clock, timeout).TotalMilliseconds);
                stream.ReadExactly(bytes);
                return;
            }
            catch (Exception e) when (e is SocketException or AggregateException or IOException)
            {
                if (clock.Elapsed > timeout)
                    throw new CollectiveTimeoutException($"rendezvous: rank {launch.Rank} could not reach rank 0 at {host}:{port} within {timeout.TotalSeconds:G4} s ({e.Message})");
                Thread.Sleep(200);
            }
        }
    }

    private static TimeSpan Remaining(Stopwatch clock, TimeSpan timeout) => timeout - clock.Elapsed is var r && r > TimeSpan.Zero ? r : TimeSpan.FromMilliseconds(1);
}
