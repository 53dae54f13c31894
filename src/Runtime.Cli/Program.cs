// Freed tensor memory stays with the process instead of going back to the kernel between tensors (a CPU training step
// spent 40% of its time faulting in pages of fresh blocks); RT_MALLOC=default keeps glibc's defaults.
Runtime.Training.Metrics.NativeHeap.KeepFreedMemory();
return Runtime.Cli.RtCommand.Run(args);
