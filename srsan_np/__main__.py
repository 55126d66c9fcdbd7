from srsan_np.runtime import main

raise SystemExit(main())
