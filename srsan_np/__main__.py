from srsan_np.cli import main

raise SystemExit(main())
